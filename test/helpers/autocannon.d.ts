// autocannon ships no types: the part test/helpers/load.ts uses.
declare module 'autocannon' {
  interface Instance {
    stop(): void;
  }
  function autocannon(
    options: Record<string, unknown>,
    callback: (err: Error | null, result: Record<string, unknown>) => void,
  ): Instance;
  export default autocannon;
}
