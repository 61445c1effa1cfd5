"""`hybrid adapter list | register | load | unload | promote | merge | scale`.

They call a running gateway's admin API (`--url`, default from the config), so the running
server switches at once. `list`, `register` and `promote` also work `--offline`, straight on
the registry folder, e.g. before the first `hybrid serve`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer

from hybrid import adapters
from hybrid.cli.state import State
from hybrid.errors import HybridError

app = typer.Typer(
    help="Adapters: register, load, unload, promote, list (through the gateway), merge, scale.",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Gateway URL (default: the config's gateway).")
]
KeyOption = Annotated[
    str | None,
    typer.Option("--admin-key", envvar="HYBRID_ADMIN_KEY", help="Admin key, if keys are on."),
]
OfflineOption = Annotated[
    bool, typer.Option("--offline", help="Work on the registry folder; no server needed.")
]


def _gateway_url(state: State, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    gateway = state.config.gateway
    host = "127.0.0.1" if gateway.host in ("0.0.0.0", "::") else gateway.host
    return f"http://{host}:{gateway.port}"


def _call(state: State, url: str | None, key: str | None, method: str, path: str, body=None):
    base = _gateway_url(state, url)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, base + path, json=body, headers=headers, timeout=300)
    except httpx.TransportError as exc:
        raise HybridError(
            f"no gateway answers at {base} ({type(exc).__name__}); start it with `hybrid serve`, "
            "pass --url, or use --offline"
        ) from None
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code >= 400:
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else response.text[:300]
        raise HybridError(f"{response.status_code}: {message}")
    return payload


@app.command("list")
def list_adapters(
    ctx: typer.Context,
    url: UrlOption = None,
    admin_key: KeyOption = None,
    offline: OfflineOption = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Registered adapters: versions, which is current, where each is loaded."""
    state: State = ctx.obj
    if offline:
        rows = adapters.list_registered(state.config)
    else:
        rows = _call(state, url, admin_key, "GET", "/admin/adapters")["adapters"]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no adapters registered; add one with `hybrid adapter register PATH --name N`")
    for row in rows:
        mark = "*" if row["current"] else " "
        where = f"loaded on {', '.join(row['loaded_on'])}" if row["loaded_on"] else "not loaded"
        if row.get("served_via") == "merged":
            urls = ", ".join(e["url"] for e in row["merged_engines"] if e["healthy"])
            where += f", served by merged engine {urls}"
        typer.echo(f"{mark} {row['id']:32s} rank {row['rank']:<3d} {where}")


@app.command("register")
def register(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="PEFT adapter folder (ours or another tool's).")],
    name: Annotated[str, typer.Option(help="Adapter name clients use as `model`.")],
    version: Annotated[str | None, typer.Option(help="Version (default: next vN).")] = None,
    promote: Annotated[bool, typer.Option(help="Make it the current version.")] = True,
    url: UrlOption = None,
    admin_key: KeyOption = None,
    offline: OfflineOption = False,
) -> None:
    """Check an adapter against the served base model and add it as `name@version`."""
    state: State = ctx.obj
    folder = path.expanduser().resolve()
    if offline:
        added = adapters.register(state.config, folder, name, version, promote=promote)
        typer.echo(f"registered {added.engine_name}{' (current)' if added.current else ''}")
        return
    body = {"path": str(folder), "name": name, "version": version, "promote": promote}
    added = _call(state, url, admin_key, "POST", "/admin/adapters", body)
    typer.echo(f"registered {added['id']}{' (current)' if added['current'] else ''}")


def _version_operation(ctx: typer.Context, operation: str, ref: str, url, key) -> dict:
    name, _, version = ref.partition("@")
    body = {"version": version or None}
    return _call(ctx.obj, url, key, "POST", f"/admin/adapters/{name}/{operation}", body)


@app.command("load")
def load(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="`name` (current version) or `name@version`.")],
    url: UrlOption = None,
    admin_key: KeyOption = None,
) -> None:
    """Load an adapter into the engine now instead of on its first request."""
    result = _version_operation(ctx, "load", name, url, admin_key)
    typer.echo(f"loaded {result['id']} on {', '.join(result['loaded_on'])}")


@app.command("unload")
def unload(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="`name` (all its versions) or `name@version`.")],
    url: UrlOption = None,
    admin_key: KeyOption = None,
) -> None:
    """Unload once its requests in flight are done (it stays registered)."""
    result = _version_operation(ctx, "unload", name, url, admin_key)
    typer.echo(f"unloaded {', '.join(result['unloaded'])}")


@app.command("promote")
def promote(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="`name@version` to make current.")],
    url: UrlOption = None,
    admin_key: KeyOption = None,
    offline: OfflineOption = False,
) -> None:
    """Switch `name` to another version: loaded first, then switched; no request fails."""
    name, _, version = ref.partition("@")
    if not version:
        raise HybridError(f"'{ref}' names no version; write it as name@version, e.g. {ref}@v2")
    if offline:
        adapters.promote(ctx.obj.config, name, version)
        typer.echo(f"{name} -> {version}")
        return
    result = _call(
        ctx.obj, url, admin_key, "POST", f"/admin/adapters/{name}/promote", {"version": version}
    )
    typer.echo(f"{name}: {result['previous']} -> {result['current']}")


@app.command()
def merge(
    ctx: typer.Context,
    adapter: Annotated[
        str, typer.Argument(help="Adapter folder, or name@version of a registered version.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the merged model.")],
    base_model: Annotated[str | None, typer.Option(help="Default: the manifest's base.")] = None,
    dtype: Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")] = "auto",
) -> None:
    """Merge an adapter into its base model (one plain model folder). Merge a registered
    version (name@version) to serve it as a merged engine: the fast path for an adapter that
    takes most of the traffic (docs/serving.md, "Merged fast path")."""
    state: State = ctx.obj
    config = state.config if "@" in adapter and not Path(adapter).expanduser().is_dir() else None
    merged = adapters.merge(adapter, out, config=config, base_model=base_model, dtype=dtype)
    typer.echo(f"merged model written to {merged.path}")
    if merged.engine_name:
        name, _, version = merged.engine_name.partition("@")
        typer.echo(
            f"serve it as {merged.engine_name}'s merged engine: python -m "
            f"vllm.entrypoints.openai.api_server --model {merged.path} --served-model-name "
            f"{' '.join(merged.served_names())} --port 8001 ...; then in hybrid.yaml: "
            f"merged_engines: [{{adapter: {name}, version: {version}, url: http://HOST:8001}}]"
        )


@app.command()
def scale(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder.")],
    factor: Annotated[float, typer.Option(help="Strength: 1 = as trained, 0.5 = half.")],
    out: Annotated[Path, typer.Option(help="Folder for the scaled adapter.")],
) -> None:
    """Copy an adapter with its strength scaled (lora_alpha x factor); register the copy as a
    new version to trade voice for the base model's facts without retraining."""
    path = adapters.scale(adapter, out, factor)
    typer.echo(f"adapter scaled x{factor:g} written to {path}")
