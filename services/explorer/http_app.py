"""The HTTP side of the spd application: the JSON API, the pages, the login, the health route and
the package's static files, as one FastAPI app that `@serve.ingress` puts on the deployment.

Routes only: each page's data comes from its view (views/), which calls the deployment's RPC
methods as the JSON API does, with the caller already authenticated here."""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from grpc_health.v1 import health_pb2
from jinja2 import Environment, PackageLoader, select_autoescape
from ray import serve
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from services.explorer import json_api
from services.explorer.http_auth import COOKIE, OPEN_PATHS, authorized, session_value, token_matches
from services.explorer.page_errors import PageError
from services.explorer.rpc import Rpc, RpcRefused
from services.explorer.state import ExplorerState
from services.explorer.views.component import component
from services.explorer.views.components import components
from services.explorer.views.decomposition import decomposition
from services.explorer.views.graph import graph
from services.explorer.views.home import home
from services.explorer.views.playground import playground
from services.serving import health
from services.serving.errors import RequestError

logger = logging.getLogger("ray.serve")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""No inline script, no inline style, nothing from another origin."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
TEMPLATES = Environment(
    loader=PackageLoader("services.explorer", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
"""The pages' templates; every value they insert is escaped unless it is Markup (our SVG)."""
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def _static_files() -> dict[str, tuple[bytes, str]]:
    """{file name: (bytes, media type)} of the package's static folder, read once: a request
    names one of these or gets a 404 (no path is ever joined from a request)."""
    folder = files("services.explorer") / "static"
    return {
        entry.name: (entry.read_bytes(), STATIC_TYPES[suffix])
        for entry in folder.iterdir()
        if (suffix := "." + entry.name.rsplit(".", 1)[-1]) in STATIC_TYPES
    }


def _server() -> Any:
    """The DecompositionServer replica this request runs in."""
    return serve.get_replica_context().servable_object


def _root(request: Request) -> str:
    """The application's route prefix ("" at the root): every link of a page starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _path(request: Request) -> str:
    """The request's path below the route prefix."""
    root, path = _root(request), request.url.path
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def _rpc(server: Any) -> Rpc:
    """Calls of the deployment's methods on behalf of an HTTP caller already authenticated."""
    token = server.token
    return Rpc(server, [("authorization", f"Bearer {token}")] if token else [])


def _safe_next(target: str | None) -> str:
    """A local path to return to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def build_http_app() -> FastAPI:
    """The app (built on each replica by `@serve.ingress`)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    static = _static_files()
    states: dict[int, ExplorerState] = {}

    def state(server: Any) -> ExplorerState:
        if id(server) not in states:
            states[id(server)] = ExplorerState(server.handlers.catalog)
        return states[id(server)]

    def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(root=_root(request), **context)
        return HTMLResponse(html, status_code=status)

    def error_page(request: Request, status: int, message: str) -> HTMLResponse:
        titles = {400: "Bad request", 401: "Not signed in", 404: "Not found"}
        title = titles.get(status, f"Error {status}")
        return render(request, "error.html", status, title=title, message=message)

    async def page(request: Request, template: str, view: Any, *args: Any) -> Response:
        try:
            context = await view(*args)
        except PageError as err:
            return error_page(request, err.status, err.message)
        except (RpcRefused, RequestError) as err:
            return error_page(request, json_api.HTTP_STATUS.get(err.code, 500), err.message)
        except Exception as err:  # a bug, never the caller's input: the log has the traceback
            logger.exception("page %s failed", _path(request))
            message = f"internal error ({type(err).__name__}); the server log has the details"
            return error_page(request, 500, message)
        return render(request, template, **context)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        """The token on every route but the open ones; security headers on every answer."""
        root, path = _root(request), _path(request)
        if path not in OPEN_PATHS and not authorized(request, _server().token):
            if path.startswith("/api/"):
                response: Response = json_api.error_response(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "this server requires a token: send 'Authorization: Bearer <token>'",
                )
            elif request.method == "GET" and not path.startswith("/static/"):
                target = path + (f"?{request.url.query}" if request.url.query else "")
                login = f"{root}/login?{urlencode({'next': target})}"
                response = RedirectResponse(login, status_code=303)
            else:
                response = error_page(request, 401, "this server requires a token: sign in")
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        message = f"{request.method} {_path(request)}: {err.detail}"
        if _path(request).startswith("/api/"):
            code = (
                grpc.StatusCode.NOT_FOUND
                if err.status_code == 404
                else grpc.StatusCode.UNIMPLEMENTED
            )
            return JSONResponse(json_api.error_body(code, message), status_code=err.status_code)
        return error_page(request, err.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> Response:
        return error_page(request, 400, f"bad request: {err.errors()}")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Open to probes: SERVING once the deployment answers."""
        status = health.check(health_pb2.HealthCheckRequest()).status
        return JSONResponse({"status": health_pb2.HealthCheckResponse.ServingStatus.Name(status)})

    @app.get("/login")
    async def login_form(request: Request) -> Response:
        root, target = _root(request), _safe_next(request.query_params.get("next"))
        if not _server().token:
            return RedirectResponse(root + target, status_code=303)
        return render(request, "login.html", next=target, failed=False)

    @app.post("/login")
    async def login(request: Request) -> Response:
        token = _server().token
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        back = _safe_next((form.get("next") or ["/"])[0])
        target = _root(request) + back
        if not token:
            return RedirectResponse(target, status_code=303)
        if not token_matches((form.get("token") or [""])[0], token):
            return render(request, "login.html", 401, next=back, failed=True)
        response = RedirectResponse(target, status_code=303)
        cookie = session_value(token)
        path = _root(request) or "/"
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path=path)
        return response

    @app.post("/api/v1/{method}")
    async def api(method: str, request: Request) -> Response:
        return await json_api.answer(_rpc(_server()), method, request)

    @app.get("/static/{name}")
    async def static_file(name: str, request: Request) -> Response:
        if name not in static:
            return error_page(request, 404, f"no static file {name!r}")
        content, media = static[name]
        return Response(content, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        content, media = static["favicon.svg"]
        return Response(content, media_type=media)

    @app.get("/")
    async def home_page(request: Request) -> Response:
        return await page(request, "home.html", home, _rpc(_server()))

    @app.get("/d/{name}")
    async def decomposition_page(name: str, request: Request) -> Response:
        server = _server()
        view_args = (_rpc(server), state(server), name)
        return await page(request, "decomposition.html", decomposition, *view_args)

    @app.get("/d/{name}/components")
    async def components_page(name: str, request: Request) -> Response:
        server = _server()
        query = dict(request.query_params)
        view_args = (_rpc(server), state(server), name, query)
        return await page(request, "components.html", components, *view_args)

    @app.get("/d/{name}/c/{module}/{index}")
    async def component_page(name: str, module: str, index: str, request: Request) -> Response:
        server = _server()
        query = dict(request.query_params)
        view_args = (_rpc(server), state(server), name, module, index, query)
        return await page(request, "component.html", component, *view_args)

    @app.get("/d/{name}/graph")
    async def graph_page(name: str, request: Request) -> Response:
        """The attribution graph: the view checks the query; the page's script streams it."""
        query = dict(request.query_params)
        return await page(request, "graph.html", graph, _rpc(_server()), name, query)

    @app.get("/d/{name}/prompt")
    async def playground_page(name: str, request: Request) -> Response:
        server = _server()
        pairs = request.query_params.multi_items()
        view_args = (_rpc(server), state(server), name, pairs)
        return await page(request, "playground.html", playground, *view_args)

    return app
