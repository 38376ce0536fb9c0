"""The `kernel-builder` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .build import BuildOptions, build_all, format_table, install_in_place
from .config import ConfigError, load_config
from .plan import plan_variants
from .toolchain import ToolchainError, detect_toolchain


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ToolchainError) as error:
        print(f"kernel-builder: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kernel-builder", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="command")

    build = sub.add_parser("build", help="build every variant this environment can build")
    _add_config(build)
    build.add_argument("--out", type=Path, help="output dir (default: build/ beside build.toml)")
    build.add_argument("--variant", action="append", help="only this variant (repeatable)")
    build.add_argument("--jobs", "-j", type=int, help="parallel compile jobs (ninja -j)")
    build.add_argument(
        "--arch", action="append", help="CUDA capability to build, e.g. 9.0 (repeatable)"
    )
    build.add_argument(
        "--inplace",
        action="store_true",
        help="also install the best variant into torch-ext/<package> for `import` in place",
    )
    build.set_defaults(func=_cmd_build)

    check = sub.add_parser("check", help="check staged variants (ABI, RPATH, digests, import)")
    check.add_argument("build_dir", type=Path, nargs="?", default=Path("build"))
    check.set_defaults(func=_cmd_check)

    check_config = sub.add_parser("check-config", help="validate build.toml and print it resolved")
    _add_config(check_config)
    check_config.set_defaults(func=_cmd_check_config)

    upload = sub.add_parser(
        "upload", help="check, then upload every staged variant to a Hub kernel repo"
    )
    upload.add_argument("build_dir", type=Path, nargs="?", default=Path("build"))
    upload.add_argument("--repo-id", help="ORG/NAME (default: [general.hub] repo-id)")
    upload.add_argument("--branch", help="branch to commit to (default: v<general.version>)")
    upload.add_argument("--private", action="store_true", help="create the repo private")
    upload.add_argument(
        "--config", type=Path, help="build.toml path (default: beside the build dir)"
    )
    upload.set_defaults(func=_cmd_upload)

    variants = sub.add_parser("list-variants", help="the matrix, and what this environment builds")
    _add_config(variants)
    variants.set_defaults(func=_cmd_list_variants)
    return parser


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("build.toml"), help="build.toml path")


def _cmd_build(args) -> int:
    config = load_config(args.config)
    options = BuildOptions(
        out_dir=(args.out or config.root / "build").resolve(),
        only=args.variant,
        jobs=args.jobs,
        cuda_archs=tuple(args.arch) if args.arch else _env_archs(),
    )
    results = build_all(config, detect_toolchain(), options)
    print()
    print(format_table(results))
    failed = [r for r in results if r.status == "failed"]
    for result in failed:
        print(f"\n{result.name} failed:\n{result.detail}", file=sys.stderr)
    if args.inplace and not failed:
        chosen = install_in_place(config, results)
        where = chosen.name if chosen else "nothing (no variant was built)"
        print(f"\nin place: torch-ext/{config.general.python_name} now uses {where}")
    return 1 if failed else 0


def _env_archs() -> tuple[str, ...] | None:
    """TK_CUDA_ARCHS="9.0 8.0" narrows CUDA capabilities (for `pip install -e .`)."""
    value = os.environ.get("TK_CUDA_ARCHS", "").replace(";", " ").replace(",", " ").split()
    return tuple(value) or None


def _cmd_check(args) -> int:
    from .check import check_build_dir, format_check_report

    report = check_build_dir(args.build_dir.resolve())
    print(format_check_report(report))
    return 0 if all(r.ok for results in report.values() for r in results) else 1


def _cmd_upload(args) -> int:
    from .upload import UploadError, default_branch, upload_build

    repo_id, branch = args.repo_id, args.branch
    if repo_id is None or branch is None:
        config = load_config(args.config or args.build_dir.resolve().parent / "build.toml")
        branch = branch or default_branch(config.general.version)
        repo_id = repo_id or (config.general.hub.repo_id if config.general.hub else None)
    if repo_id is None:
        print("kernel-builder: upload needs --repo-id (build.toml has no [general.hub] repo-id)",
              file=sys.stderr)
        return 2
    try:
        result = upload_build(args.build_dir, repo_id, branch, private=args.private)
    except UploadError as error:
        print(f"kernel-builder: {error}", file=sys.stderr)
        return 1
    print(f"uploaded {', '.join(result.variants)} to {result.repo_id}@{result.branch} "
          f"(commit {result.commit}, {len(result.uploaded)} files)")
    for path in result.deleted:
        print(f"deleted stale {path}")
    return 0


def _cmd_check_config(args) -> int:
    config = load_config(args.config)
    print(json.dumps(config.to_dict(), indent=2))
    return 0


def _cmd_list_variants(args) -> int:
    config = load_config(args.config)
    planned, skipped = plan_variants(config, detect_toolchain())
    for variant in planned:
        print(f"build  {variant.name}  ({', '.join(variant.kernel_backends)} kernels)")
    for variant in skipped:
        print(f"skip   {variant.name}  {variant.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
