"""Issue 21: the API's URLs are resolved by first segment (``apps.common.routing.IndexedResolver``).

Every URL of the project (each route of every pattern, reversed with sample values, with and without
its trailing slash) and generated paths made of the project's own segments resolve to exactly what
Django's plain resolver finds over the same patterns: the same view, name, arguments and route, or
the same 404.
"""

from __future__ import annotations

from functools import cache

import pytest
from django.urls import URLResolver, get_resolver
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern, RoutePattern
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.common.routing import IndexedResolver, literal_prefix

SAMPLE_ID = "0b4f6a52-64b3-4f4c-8a35-52b4bd2a1e07"


def plain(resolver: URLResolver) -> URLResolver:
    """The same patterns under Django's own resolver at every level."""
    patterns = [plain(p) if isinstance(p, URLResolver) else p for p in resolver.url_patterns]
    return URLResolver(
        resolver.pattern, patterns, resolver.default_kwargs, app_name=resolver.app_name, namespace=resolver.namespace
    )


@cache
def reference() -> URLResolver:
    return plain(get_resolver())


def answer(resolver: URLResolver, path: str):
    try:
        match = resolver.resolve(path)
    except Resolver404:
        return "404"
    return (match.func, match.url_name, match.args, match.kwargs, match.route, match.namespaces)


def project_paths() -> list[str]:
    """Each route of each named pattern, reversed with sample values, under every namespace."""
    paths: set[str] = set()
    todo: list[tuple[str, URLResolver]] = [("", get_resolver())]
    while todo:
        prefix, resolver = todo.pop()
        for key in list(resolver.reverse_dict):
            for possibilities, _pattern, _defaults, _converters in resolver.reverse_dict.getlist(key):
                for result, params in possibilities:
                    values = {p: SAMPLE_ID if p.endswith(("pk", "id")) else "sample" for p in params}
                    paths.add("/" + prefix + result % values)
        for namespace_prefix, sub in resolver.namespace_dict.values():
            todo.append((prefix + namespace_prefix, sub))
    return sorted(paths)


ALL_PATHS = project_paths()
SEGMENTS = sorted({segment for path in ALL_PATHS for segment in path.split("/") if segment})


def test_the_api_resolves_through_the_index():
    api = next(p for p in get_resolver().url_patterns if str(p.pattern) == "api/v1/")
    assert isinstance(api, IndexedResolver)
    router = next(p for p in api.url_patterns if isinstance(p, IndexedResolver))
    assert len(router.url_patterns) > 150 and "cloudpods" in router._groups
    # What it is for: a late module's path tries its own few patterns, not the hundreds before it.
    assert len(router._groups["cloudpods"].url_patterns) < 20


def test_every_project_url_resolves_as_django_would():
    indexed = get_resolver()
    assert len(ALL_PATHS) > 500
    for path in ALL_PATHS:
        for variant in {path, path.rstrip("/") or "/", path + "x", path + "/"}:
            assert answer(indexed, variant) == answer(reference(), variant), variant


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(SEGMENTS), st.just(SAMPLE_ID), st.text("abcs-_.", max_size=6)),
        min_size=0,
        max_size=6,
    ),
    st.sampled_from(["", "/"]),
    st.sampled_from(["/", "/api/v1/", "/api/v1/hosting/", "/admin/"]),
)
def test_generated_paths_resolve_as_django_would(segments, end, start):
    path = start + "/".join(segments) + end
    assert answer(get_resolver(), path) == answer(reference(), path)


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (RegexPattern(r"^tenants/?$"), "tenants"),  # the slash is optional: not in the prefix
        (RegexPattern(r"^tenants/(?P<pk>[0-9a-f-]{36})/?$"), "tenants/"),
        (RegexPattern(r"^ab*c"), "a"),
        (RegexPattern(r"^ab{2}"), "a"),
        (RegexPattern(r"^ab+"), "a"),
        (RegexPattern(r"^a\.b"), "a"),
        (RegexPattern(r"^a.b"), "a"),
        (RegexPattern(r"^a[bc]"), "a"),
        (RegexPattern(r"^abc|^xyz"), ""),  # an alternation: no prefix is certain
        (RegexPattern(r"tenants/"), ""),  # without ^ a regex is searched for anywhere
        (RegexPattern(r"^(?P<x>a)bc"), ""),
        (RoutePattern("nodes/<uuid:pk>/"), "nodes/"),
        (RoutePattern("healthz/"), "healthz/"),
        (RoutePattern(""), ""),
    ],
)
def test_a_pattern_s_literal_prefix(pattern, prefix):
    assert literal_prefix(pattern) == prefix
