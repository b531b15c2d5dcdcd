"""`botenv completion bash|zsh`: a shell completion script made from botenv's parser, so it
offers the subcommands `botenv --help` lists, each one's options, and the choices of options
that have them (`-o`). zsh runs the bash script through its bashcompinit."""

from __future__ import annotations

import argparse
import shlex

SHELLS = ("bash", "zsh")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands --help shows (hidden ones left out), in its order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            shown = [a.dest for a in action._choices_actions]
            return {name: action.choices[name] for name in shown}
    return {}


def _words(values: list[str]) -> str:
    return shlex.quote(" ".join(values))


def _command_case(name: str, sub: argparse.ArgumentParser) -> list[str]:
    """The `case` branch that completes the words after `botenv NAME`."""
    options: list[str] = []
    after_flag: list[str] = []  # the choices after an option that has them
    positional: list[str] = []  # the choices of the first positional that has them
    for action in sub._actions:
        choices = [str(c) for c in action.choices or ()]
        if not action.option_strings:
            if choices and not positional:
                positional = choices
            continue
        if action.help == argparse.SUPPRESS:
            continue
        options += action.option_strings
        if choices:
            after_flag.append(
                f"                {'|'.join(action.option_strings)}) "
                f'COMPREPLY=($(compgen -W {_words(choices)} -- "$cur")); return ;;'
            )
    takes_value = [
        o
        for action in sub._actions
        if action.option_strings and action.nargs != 0 and not action.choices
        for o in action.option_strings
    ]
    if takes_value:
        # A value to type (a namespace, a file): no option names; -o default offers files.
        after_flag.append(f"                {'|'.join(takes_value)}) return ;;")
    lines = [f"        {name})"]
    if after_flag:
        lines += ['            case "$prev" in', *after_flag, "            esac"]
    if positional:
        lines.append(
            f'            [[ "$cur" != -* ]] && '
            f'{{ COMPREPLY=($(compgen -W {_words(positional)} -- "$cur")); return; }}'
        )
    lines.append(f'            COMPREPLY=($(compgen -W {_words(options)} -- "$cur")) ;;')
    return lines


def bash_script(parser: argparse.ArgumentParser, prog: str = "botenv") -> str:
    commands = _subcommands(parser)
    cases = [line for name, sub in commands.items() for line in _command_case(name, sub)]
    top = _words([*commands, "-h", "--help"])
    func = "_" + prog.replace("-", "_")
    return "\n".join(
        [
            f"# {prog} completion for bash: source <({prog} completion bash)",
            f"{func}() {{",
            "    local cur prev cmd i",
            '    cur="${COMP_WORDS[COMP_CWORD]}"',
            '    prev="${COMP_WORDS[COMP_CWORD-1]}"',
            '    cmd=""',
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        case "${COMP_WORDS[i]}" in',
            "            -*) ;;",
            '            *) cmd="${COMP_WORDS[i]}"; break ;;',
            "        esac",
            "    done",
            "    COMPREPLY=()",
            '    case "$cmd" in',
            f'        "") COMPREPLY=($(compgen -W {top} -- "$cur")) ;;',
            *cases,
            "    esac",
            "}",
            # -o default: an option's value with no choices (a kubeconfig, a directory)
            # completes as a file name.
            f"complete -o default -F {func} {prog}",
            "",
        ]
    )


def zsh_script(parser: argparse.ArgumentParser, prog: str = "botenv") -> str:
    return "\n".join(
        [
            f"#compdef {prog}",
            f"# {prog} completion for zsh: source <({prog} completion zsh)",
            "autoload -U +X compinit && compinit",
            "autoload -U +X bashcompinit && bashcompinit",
            bash_script(parser, prog),
        ]
    )


def add_completion_command(
    sub: argparse._SubParsersAction, parser: argparse.ArgumentParser
) -> None:
    """Register `completion SHELL`; the script is made from `parser` when it runs, so it
    covers every subcommand registered after this one too."""
    p = sub.add_parser(
        "completion",
        help="print a shell completion script: source <(botenv completion bash)",
        description="Print a completion script for bash or zsh. Load it in the current "
        "shell with `source <(botenv completion bash)`, or save it where the shell reads "
        "completions (e.g. /etc/bash_completion.d/botenv).",
    )
    p.add_argument("shell", choices=SHELLS)

    def run(args: argparse.Namespace) -> int:
        script = bash_script if args.shell == "bash" else zsh_script
        print(script(parser), end="")
        return 0

    p.set_defaults(func=run)
