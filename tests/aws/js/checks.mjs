// What the JavaScript SDK scripts share: plain assertions, the error a call fails with,
// and running the checks in order so that the first failure names its check and fails
// the run.

export function eq(got, want, what) {
  const [g, w] = [JSON.stringify(got), JSON.stringify(want)];
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

// The error name and HTTP status a call fails with; throws when it succeeds.
export async function errorOf(promise) {
  try {
    await promise;
  } catch (e) {
    return { name: e.name, status: e.$metadata?.httpStatusCode };
  }
  throw new Error("succeeded; an error was expected");
}

export async function run(checks) {
  for (const [name, check] of Object.entries(checks)) {
    try {
      await check();
      console.log(`ok ${name}`);
    } catch (e) {
      console.error(`FAILED ${name}: ${e.name}: ${e.message}`);
      process.exit(1);
    }
  }
}
