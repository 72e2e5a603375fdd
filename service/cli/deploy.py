"""``aiops package lambda`` and ``aiops deploy create|update|describe|delete``: the stack in deploy/."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from service.cli.common import emit, fail, handle_errors

DEFAULT_OUT = Path("dist/lambda")


def _stack_errors(func):
    """A stack or package problem is one line on stderr and exit 1, like every operational error."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from service.lambda_package import PackageError
        from service.stack import StackError

        try:
            return func(*args, **kwargs)
        except (StackError, PackageError) as exc:
            fail(str(exc))
    return wrapper


@click.group()
def package() -> None:
    """Build what the stack deploys."""


@package.command("lambda")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_OUT,
              show_default=True, help="Folder the zips are written to.")
@click.option("--compress-level", type=click.IntRange(0, 9), default=6, show_default=True,
              help="zlib level of the zips (1: faster to build, a little larger).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
@_stack_errors
def package_lambda(out: Path, compress_level: int, as_json: bool) -> None:
    """One zip per Lambda (aiops-platform-rca, aiops-platform-rollback) holding only what its
    handler imports; refused over Lambda's 250 MB unzipped limit. Sizes printed."""
    from service.lambda_package import build_all

    built = [p.to_dict() for p in build_all(out, compress_level)]
    emit(built, as_json, [[p["function"], p["handler"], p["files"], p["zipped_mb"], p["unzipped_mb"],
                           p["limit_mb"], p["path"]] for p in built],
         ["function", "handler", "files", "zipped MB", "unzipped MB", "limit MB", "package"])


def _parameters(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="--parameter")
        out[name] = text
    return out


def stack_options(func):
    func = click.option("--template", type=click.Path(path_type=Path, dir_okay=False), default=None,
                        help="The SAM template [deploy/template.yaml].")(func)
    func = click.option("--wait-delay", type=click.IntRange(1, 60), default=10, show_default=True,
                        help="Seconds between CloudFormation status polls.")(func)
    return click.option("--stack-name", default="aiops-platform", show_default=True)(func)


def change_options(func):
    func = click.option("--parameter", "-p", "parameters", multiple=True, metavar="NAME=VALUE",
                        help="A template parameter (repeat); see deploy/template.yaml.")(func)
    func = click.option("--bucket", default=None, help="S3 bucket for the Lambda packages (and a "
                        "large template); made if absent. Sets LambdaCodeBucket.")(func)
    return click.option("--packages", type=click.Path(path_type=Path, file_okay=False), default=None,
                        help="Folder of `aiops package lambda`'s zips to upload (needs --bucket).")(func)


def _deployer(stack_name: str, template: Path | None, wait_delay: int):
    from service.aws import ClientFactory
    from service.stack import TEMPLATE, StackDeployer

    return StackDeployer(ClientFactory(), stack_name, template or TEMPLATE, wait_delay=wait_delay)


def _with_packages(deployer, parameters: dict[str, str], packages: Path | None,
                   bucket: str | None) -> dict[str, str]:
    from service.lambda_package import FUNCTIONS

    if bucket:
        parameters.setdefault("LambdaCodeBucket", bucket)
    if packages is None:
        return parameters
    if not bucket:
        raise click.UsageError("--packages needs --bucket (the packages are uploaded to S3)")
    keys = {"aiops-platform-rca": "RcaCodeKey", "aiops-platform-rollback": "RollbackCodeKey"}
    for function in FUNCTIONS:
        path = packages / f"{function}.zip"
        if not path.is_file():
            raise click.UsageError(f"no {path}: run `aiops package lambda --out {packages}` first")
        parameters[keys[function]] = deployer.upload_package(path, bucket)
    return parameters


@click.group()
def deploy() -> None:
    """The platform's stack (deploy/template.yaml) through the CloudFormation API."""


@deploy.command()
@stack_options
@change_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
@_stack_errors
def create(stack_name, template, wait_delay, parameters, bucket, packages, as_json) -> None:
    """Create the stack and wait until every resource is made."""
    deployer = _deployer(stack_name, template, wait_delay)
    values = _with_packages(deployer, _parameters(parameters), packages, bucket)
    _show(deployer.create(values, bucket=bucket), as_json)


@deploy.command()
@stack_options
@change_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
@_stack_errors
def update(stack_name, template, wait_delay, parameters, bucket, packages, as_json) -> None:
    """Update the stack to the template, parameters and packages given (no change is not an error)."""
    deployer = _deployer(stack_name, template, wait_delay)
    values = _with_packages(deployer, _parameters(parameters), packages, bucket)
    _show(deployer.update(values, bucket=bucket), as_json)


@deploy.command()
@stack_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
@_stack_errors
def describe(stack_name, template, wait_delay, as_json) -> None:
    """Status, outputs and every resource of the stack."""
    _show(_deployer(stack_name, template, wait_delay).describe(), as_json)


@deploy.command()
@stack_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
@_stack_errors
def delete(stack_name, template, wait_delay, yes, as_json) -> None:
    """Delete the stack (the incident table is kept)."""
    if not yes:
        click.confirm(f"Delete stack {stack_name}?", abort=True)
    done = _deployer(stack_name, template, wait_delay).delete()
    emit(done, as_json)
    if not as_json:
        click.echo(f"{done['name']}: {done['status']}; kept: {', '.join(done['retained']) or 'nothing'}")


def _show(found: dict, as_json: bool) -> None:
    if as_json:
        emit(found, True)
        return
    reason = f" ({found['reason']})" if found.get("reason") else ""
    click.echo(f"{found['name']}: {found['status']}{reason}")
    for key, value in found.get("outputs", {}).items():
        click.echo(f"  {key}: {value}")
    emit(None, False, [[r["logical_id"], r["type"], r["physical_id"], r["status"]]
                       for r in found.get("resources", [])],
         ["resource", "type", "physical id", "status"])
