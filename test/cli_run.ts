// Runs the shardlab command line as a user would (`deno run -A cli/main.ts …`), capturing its output.

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `shardlab ...args`: its exit code and output. */
export function shardlab(...args: string[]): Promise<CliResult> {
  return shardlabWith({}, ...args);
}

/** `shardlab ...args` with `env` added to the environment. */
export async function shardlabWith(env: Record<string, string>, ...args: string[]): Promise<CliResult> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { XDG_RUNTIME_DIR: "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}
