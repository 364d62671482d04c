"""The command-line tools (`make plan`, `check`, `bench`, `compare`, `wake`, `prices`, `catalog-add`), apart from the
Pulumi program in fleet/ that __main__.py runs: a tool may import the program's modules, never the other way round."""
