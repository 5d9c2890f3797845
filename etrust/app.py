"""The FastAPI app factory: PKI endpoints, the certificate API and the front page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from etrust.api import router as api_router
from etrust.api_consent import router as consent_router
from etrust.api_licenses import router as licenses_router
from etrust.api_presentation import router as presentation_router
from etrust.api_registry import router as registry_router
from etrust.api_seals import router as seals_router
from etrust.api_security import router as security_router
from etrust.api_verify import MAX_UPLOAD, VERIFY_PATH
from etrust.api_verify import router as verify_router
from etrust.limits import BodyLimitMiddleware
from etrust.pages import router as pages_router
from etrust.pki_routes import router as pki_router
from etrust.problems import install_problem_handlers
from etrust.runtime import open_runtime
from etrust.services import Services
from etrust.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings, database engine and keys are opened here, never at import."""
    runtime = open_runtime(settings or load_settings())
    services = Services.build(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        recorder = services.__dict__.get("_check_recorder")
        if recorder is not None:
            recorder.close()  # the checks still queued are written before the database closes
        runtime.close()

    app = FastAPI(
        title="etrust",
        summary="SM2/RSA PKI for electronic licenses and electronic seals",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.services = services
    app.add_middleware(
        BodyLimitMiddleware,
        limit=runtime.settings.max_upload_bytes,
        uploads={VERIFY_PATH: MAX_UPLOAD},
    )
    install_problem_handlers(app)
    app.include_router(pki_router)
    app.include_router(api_router)
    app.include_router(security_router)
    app.include_router(seals_router)
    app.include_router(licenses_router)
    app.include_router(consent_router)
    app.include_router(presentation_router)
    app.include_router(registry_router)
    app.include_router(verify_router)
    app.include_router(pages_router)
    return app
