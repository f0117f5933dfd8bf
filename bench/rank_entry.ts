// Where a benchmark's rank entry module is: beside the module that launches it, as its source file
// in the repository, or as the .js file of the same name that the package's build puts in dist/.

/** The rank entry `name` ("collectives_rank") beside `from` (the launching module's import.meta.url). */
export function rankEntry(name: string, from: string): URL {
  const built = !new URL(from).pathname.endsWith(".ts");
  return new URL(`./${name}.${built ? "js" : "ts"}`, from);
}
