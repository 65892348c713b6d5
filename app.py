"""Entry point: settings -> instance lock -> services -> FastAPI (+ Gradio at /) -> uvicorn."""

from __future__ import annotations

import sys

from core.operations.auth import bind_notice
from core.operations.instance_lock import run_holding
from core.settings import Settings, parse_settings


def create_app(services):
    """The one ASGI app: REST API under /api/v1, OpenAI-compatible API under /v1, Gradio UI at /."""
    import gradio as gr
    from fastapi import FastAPI

    from api import build_api, build_openai_router, install_error_handlers
    from api.docs import docs_urls, install_guarded_docs
    from api.metrics import install_metrics
    from api.origin import SameOrigin
    from api.surrogates import RefuseLoneSurrogates
    from api.throttle import LoginThrottle, ThrottleLogins
    from core.services import VERSION
    from ui.layout import HEAD, STYLE, build_app

    auth = services.auth
    app = FastAPI(title="Refinery", version=VERSION, **docs_urls(auth))
    install_guarded_docs(app, auth)
    install_error_handlers(app)
    install_metrics(app, services)  # GET /metrics, and every request counted and timed
    app.include_router(build_api(services))
    app.include_router(build_openai_router(services))  # /v1: OpenAI's clients
    blocks = build_app(services)
    blocks.queue(default_concurrency_limit=4, max_size=services.settings.max_queue)
    login = services.auth.verify_async if services.auth.enabled else None  # Gradio's login page
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        auth=login,
        auth_message="Log in to Refinery",
        max_file_size=services.settings.max_upload_bytes,
        css_paths=[STYLE],
        head=HEAD,
    )
    settings = services.settings
    app.add_middleware(RefuseLoneSurrogates)
    if auth.enabled:  # both login doors (API Basic, the UI's /login) slow down guessing
        app.add_middleware(ThrottleLogins, throttle=LoginThrottle())
    # Outermost: a cross-site or foreign-host request is refused before any route sees it
    app.add_middleware(SameOrigin, allowed_hosts=(settings.host, *settings.allowed_hosts))
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    from core.services import build_services

    services = build_services(settings)
    try:
        notice = bind_notice(
            settings.host,
            auth_enabled=services.auth.enabled,
            allow_unauthenticated=settings.allow_unauthenticated,
        )
        print(notice, file=sys.stderr if notice.startswith("WARNING") else sys.stdout, flush=True)
        print(f"Loading model {settings.model} ...", flush=True)
        services.models.get()  # converts the bundled model once, with a progress bar
        print(
            f"Refinery is ready: http://{settings.host}:{settings.port}  "
            f"(data in {settings.data_dir})"
        )
        uvicorn.run(
            create_app(services), host=settings.host, port=settings.port, log_level="warning"
        )
    finally:
        services.close()


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    return run_holding(settings.lock_path, f"serving {settings.host}:{settings.port}",
                       lambda: serve(settings), program="refinery")


if __name__ == "__main__":
    sys.exit(main())
