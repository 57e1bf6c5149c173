// One lint configuration for the whole tree. The layering rules make DESIGN.md's
// "dependencies point inward" a checked fact: src/raft is pure (no I/O, no clock,
// no randomness, nothing outside itself).
import tseslint from 'typescript-eslint';

const impureGlobals = [
  { name: 'setTimeout', message: 'src/raft is pure: time arrives through tick().' },
  { name: 'setInterval', message: 'src/raft is pure: time arrives through tick().' },
  { name: 'setImmediate', message: 'src/raft is pure: no scheduling in the core.' },
  { name: 'queueMicrotask', message: 'src/raft is pure: no scheduling in the core.' },
  { name: 'process', message: 'src/raft is pure: no process access in the core.' },
  { name: 'performance', message: 'src/raft is pure: no clock in the core.' },
  { name: 'Buffer', message: 'src/raft is pure and runs in browsers: use Uint8Array.' },
];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'data/', 'coverage/', 'bench/results/'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    files: ['src/raft/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'src/raft is pure: no Node.js modules.' },
            { group: ['../*', '!../raft/*'], message: 'src/raft imports nothing outside itself.' },
            {
              regex: '^[^.]',
              message: 'src/raft has zero dependencies: import only relative modules.',
            },
          ],
        },
      ],
      'no-restricted-globals': ['error', ...impureGlobals],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'src/raft is pure: time is ticks.' },
        { object: 'Math', property: 'random', message: 'src/raft is pure: use the seeded Rng.' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: "NewExpression[callee.name='Date']", message: 'src/raft is pure: no clock.' },
        { selector: 'AwaitExpression', message: 'src/raft is synchronous.' },
      ],
    },
  },
  {
    files: ['src/storage/**/*.ts', 'src/transport/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '../server/*',
                '../kv/*',
                '../queue/*',
                '../api/*',
                '../client/*',
                '../cli/*',
                '../sim/*',
              ],
              message: 'storage and transport depend only on raft types.',
            },
          ],
        },
      ],
    },
  },
  {
    // The host runs Raft groups: it knows the core, the storage and transport contracts (it
    // declares them itself, in contracts.ts) and the shared base; never a state machine, the
    // API or the assembly that wires a node together.
    files: ['src/host/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '../*',
                '!../raft',
                '!../raft/*',
                '!../base',
                '!../base/*',
                '!../server',
                '../server/*',
                '!../server/errors.js',
              ],
              message: 'src/host imports only the core, the shared base and its own modules.',
            },
          ],
        },
      ],
    },
  },
  {
    // A state machine sees only the host's contract (contracts.ts, the command envelope) and
    // the shared base: nothing of Raft, storage, transport, the API or the node around it.
    files: ['src/kv/**/*.ts', 'src/queue/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '../*',
                '!../base',
                '!../base/*',
                '!../host',
                '../host/*',
                '!../host/contracts.js',
                '!../host/envelope.js',
              ],
              message:
                'state machines import only the host contract (host/contracts.js, host/envelope.js) and the shared base.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
