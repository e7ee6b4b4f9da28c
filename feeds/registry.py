"""Which sources and simulated venues exist: read from entry-point groups.

``relayer.sources`` names the venue adapters (:class:`feeds.base.Source`),
``relayer.simulated_venues`` the simulated venues that speak their formats
(:class:`feeds.simulated.venue.SimulatedVenue`), under the same names. A third-party
package adds a venue by declaring an entry point in each group; nothing in this
repository lists venues by hand. Loading is done on call, not at import, so a broken
plugin fails where it is used, with its name in the error.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, cast

from feeds.base import Source
from feeds.errors import SourcePluginError, UnknownSourceError

if TYPE_CHECKING:
    from feeds.simulated.venue import SimulatedVenue

__all__ = [
    "ENTRY_POINT_GROUP",
    "SIMULATED_VENUE_GROUP",
    "load_simulated_venues",
    "load_sources",
    "make_source",
]

ENTRY_POINT_GROUP = "relayer.sources"
SIMULATED_VENUE_GROUP = "relayer.simulated_venues"

def _origin(ep: EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
    return f"{ep.name} = {ep.value!r} from {dist}"


def _load_one(ep: EntryPoint, base: type, what: str) -> type:
    try:
        obj = ep.load()
    except Exception as exc:  # any import-time failure of foreign code is the plugin's fault
        raise SourcePluginError(
            f"{what} plugin {ep.name!r}: expected {ep.value!r} to import, got "
            f"{type(exc).__name__}: {exc}; fix or uninstall the package providing "
            f"{_origin(ep)}",
            source=ep.name,
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise SourcePluginError(
            f"{what} plugin {ep.name!r}: expected a subclass of {base.__module__}.{base.__qualname__}, "
            f"got {obj!r}; fix the entry point {_origin(ep)}",
            source=ep.name,
        )
    if getattr(obj, "name", None) != ep.name:
        # The name in config, logs and metrics must be the one the class reports.
        raise SourcePluginError(
            f"{what} plugin {ep.name!r}: expected {obj.__name__}.name == {ep.name!r}, got "
            f"{getattr(obj, 'name', None)!r}; make the entry point name and the class "
            f"name agree in {_origin(ep)}",
            source=ep.name,
        )
    return obj


# ``base`` is a plain ``type``: an abstract class is what is checked against, never instantiated.
def _load_group(group: str, base: type, what: str) -> dict[str, type]:
    found: dict[str, type] = {}
    origins: dict[str, str] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        cls = _load_one(ep, base, what)
        if ep.name in found and found[ep.name] is not cls:
            raise SourcePluginError(
                f"{what} plugin {ep.name!r}: expected one provider, got two "
                f"({origins[ep.name]} and {_origin(ep)}); uninstall one of them",
                source=ep.name,
            )
        found[ep.name] = cls
        origins[ep.name] = _origin(ep)
    return found


def load_sources() -> dict[str, type[Source]]:
    """All registered source classes by name; raises SourcePluginError naming a broken one."""
    return cast("dict[str, type[Source]]", _load_group(ENTRY_POINT_GROUP, Source, "source"))


def load_simulated_venues() -> dict[str, type[SimulatedVenue]]:
    """All registered simulated venues by name, sorted; raises SourcePluginError naming a broken one."""
    from feeds.simulated.venue import SimulatedVenue  # aiohttp.web only where a simulator is wanted

    return cast("dict[str, type[SimulatedVenue]]", _load_group(SIMULATED_VENUE_GROUP, SimulatedVenue, "simulated venue"))


def make_source(name: str, base_url: str | None = None, timeout: float = 2.0, stream_url: str | None = None) -> Source:
    """Instantiate the source registered as ``name``; UnknownSourceError lists known names.

    Only the named plugin is imported, so a broken plugin the config does not use
    cannot take the node down; ``load_sources`` is the strict check of all of them.
    """
    candidates = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not candidates:
        known = ", ".join(sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}))
        raise UnknownSourceError(
            f"expected a registered source name ({known or 'none installed'}), got "
            f"{name!r}; fix the source name in the config or install the package that "
            f"provides it",
            source=name,
        )
    if len({ep.value for ep in candidates}) > 1:
        raise SourcePluginError(
            f"source plugin {name!r}: expected one provider, got "
            f"{' and '.join(_origin(ep) for ep in candidates)}; uninstall all but one",
            source=name,
        )
    source_class = cast("type[Source]", _load_one(candidates[0], Source, "source"))
    if stream_url is None:
        return source_class(base_url=base_url, timeout=timeout)
    return source_class(base_url=base_url, timeout=timeout, stream_url=stream_url)
