// One lint configuration for the whole tree. The layering rules make DESIGN.md's
// "dependencies point inward" a checked fact: src/raft is pure (no I/O, no clock,
// no randomness, nothing outside itself and the shared src/base, which is as pure).
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

/**
 * Which layer may import what (DESIGN.md, "The house"), as lint rules. Exported on its own so
 * a test can lint planted imports against exactly these rules.
 */
export const layering = [
  {
    // src/base is the vocabulary every layer shares (errors, limits): as pure as the core,
    // which imports it, and it imports nothing but itself.
    files: ['src/raft/**/*.ts', 'src/base/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'src/raft and src/base are pure: no Node.js modules.' },
            {
              // gitignore-style negation cannot re-include a file under an excluded folder
              regex: '^\\.\\./(?!base/[^/]+$)',
              message: 'src/raft imports only itself and src/base; src/base only itself.',
            },
            {
              regex: '^[^.]',
              message:
                'src/raft and src/base have zero dependencies: import only relative modules.',
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
    // The base layer sits below the core: it must not reach back into it.
    files: ['src/base/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'src/base is pure: no Node.js modules.' },
            { group: ['../*'], message: 'src/base imports nothing outside itself.' },
            { regex: '^[^.]', message: 'src/base has zero dependencies.' },
          ],
        },
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
                '../host/*',
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
              group: ['../*', '!../raft', '!../raft/*', '!../base', '!../base/*'],
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
                '!../host/latin1.js',
              ],
              message:
                'state machines import only the host contract (host/contracts.js, host/envelope.js, host/latin1.js) and the shared base.',
            },
          ],
        },
      ],
    },
  },
  {
    // The ranges of a partitioned store are state machines too (the range map, a range that
    // wraps the key-value store): the host contract, the base and the key-value store.
    files: ['src/ranges/**/*.ts'],
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
                '!../kv',
                '!../kv/*',
                '!../host',
                '../host/*',
                '!../host/contracts.js',
                '!../host/envelope.js',
              ],
              message:
                'src/ranges imports only the host contract (host/contracts.js, host/envelope.js), the key-value store and the shared base.',
            },
          ],
        },
      ],
    },
  },
  {
    // The example applications use Flotilla as a program depending on it would: through the
    // public client entry point only (`flotilla/client`), Node's own modules, and their own
    // files. Nothing from src/ by path, no other package.
    files: ['examples/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^\\.\\./',
              message:
                'an example imports only its own files (./...), not from outside its folder.',
            },
            {
              regex: '^(?!node:|flotilla/client$|\\./)',
              message: 'an example imports only flotilla/client, node: modules and its own files.',
            },
          ],
        },
      ],
    },
  },
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
  ...layering,
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
