// Where a module a benchmark starts is (a rank entry, or the program of a child process): beside
// the module that starts it, as its source file in the repository, or as the .js file of the same
// name that the package's build puts in dist/.

/** The module `name` ("collectives_rank") beside `from` (the starting module's import.meta.url). */
export function rankEntry(name: string, from: string): URL {
  const built = !new URL(from).pathname.endsWith(".ts");
  return new URL(`./${name}.${built ? "js" : "ts"}`, from);
}
