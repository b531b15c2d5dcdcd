"""botenv's command line, for three audiences:

- parser: the one parser, `main()` and `kubectl_main()` (the console scripts);
- launchers: `operator` and `model-server`, the processes the Helm chart runs;
- people, train: `status`, `promote`, `rollback`, `history` and `train`, for release
  managers (what they print is made in output, what they choose in decisions);
- completion: `completion bash|zsh`, a shell completion script made from the parser;
- jobsteps: `fetch-project` and `upload`, the steps inside a training Job (hidden from
  --help);
- shared: exit codes, API errors and the person's session, a mounted Secret and errors
  without its values."""

from botenv.cli.parser import build_parser, kubectl_main, main

__all__ = ["build_parser", "kubectl_main", "main"]
