"""The typed way a request handler reaches the app's services."""

from starlette.requests import Request

from app.bootstrap import Services


def services_of(request: Request) -> Services:
    """The :class:`~app.bootstrap.Services` the lifespan stored on the app."""
    services = request.app.state.services
    assert isinstance(services, Services)
    return services
