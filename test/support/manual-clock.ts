// A clock a test moves by hand, for code that takes a Clock (src/host/contracts.ts) and whose
// test calls its periodic work itself rather than through timers.

import type { Clock } from '../../src/host/contracts.js';

export class ManualClock implements Clock {
  now = 0;
  nowMs(): number {
    return this.now;
  }
  setTimeout(): unknown {
    throw new Error('the test drives this code itself: no timers');
  }
  clearTimeout(): void {}
}
