// The error every configuration check throws: the node's settings (config.ts) and the files
// they name (auth-tokens.ts, tls-config.ts) alike, so the CLI reports them one way.

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
}
