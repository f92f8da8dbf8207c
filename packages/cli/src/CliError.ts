/** An error the CLI reports as `mcu: <message>` and exits with: 2 for usage and configuration, 1 for a failed request. */
export class CliError extends Error {
  override readonly name = 'CliError';

  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}
