"""The pool's page renders share compiled templates (homevalue.dashboards.rendering).

Voilà builds a new Jinja environment for every page it renders; these tests check that a
second render compiles nothing again, that what it renders is the same page, and that a
template is compiled again whenever sharing its code would be wrong (an edited source, an
environment that compiles differently).
"""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import jinja2
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_server.services.contents.largefilemanager import LargeFileManager
from traitlets.config import LoggingConfigurable
from voila.configuration import VoilaConfiguration
from voila.paths import collect_template_paths
from voila.voila_kernel_manager import voila_kernel_manager_factory

from homevalue.dashboards import rendering
from homevalue.dashboards.kernels import LimitedKernelManager
from homevalue.dashboards.rendering import CompiledTemplates, VoilaVersionError, check_voila

TEMPLATES = {
    "base.html": "<h1>{% block title %}{% endblock %}</h1>{% include 'part.html' %}",
    "part.html": "{{ items | join(', ') }}",
    "page.html": "{% extends 'base.html' %}{% block title %}{{ name | shout }}{% endblock %}",
}


def environment(cache, templates=TEMPLATES, **options) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.DictLoader(templates), **options)
    env.filters["shout"] = str.upper
    env.bytecode_cache = cache
    return env


def render(env: jinja2.Environment) -> str:
    template = env.get_template("page.html")
    context = {"name": "house", "items": ["a", "b"]}
    if env.is_async:
        return asyncio.run(template.render_async(**context))
    return template.render(**context)


def test_a_new_environment_compiles_no_template_again():
    cache = CompiledTemplates()
    first = render(environment(cache))
    assert (cache.hits, cache.misses, len(cache)) == (0, 3, 3)
    compiled = []

    class Counting(jinja2.Environment):
        def compile(self, *args, **kwargs):
            compiled.append(args)
            return super().compile(*args, **kwargs)

    second = Counting(loader=jinja2.DictLoader(TEMPLATES), bytecode_cache=cache)
    second.filters["shout"] = str.upper
    assert render(second) == first == "<h1>HOUSE</h1>a, b"
    assert compiled == [] and cache.hits == 3


def test_an_edited_template_compiles_again():
    cache = CompiledTemplates()
    render(environment(cache))
    edited = {**TEMPLATES, "part.html": "{{ items | join(' and ') }}"}
    assert render(environment(cache, edited)) == "<h1>HOUSE</h1>a and b"
    assert cache.misses == 4  # the edited one only


@pytest.mark.parametrize(
    "options, filter_",
    [
        ({"enable_async": True}, str.upper),  # sync code would not run in an async template
        ({"autoescape": True}, str.upper),
        ({"extensions": ["jinja2.ext.do"]}, str.upper),
        ({}, jinja2.pass_context(lambda context, value: value.upper() + "!")),  # binds context
    ],
)
def test_an_environment_that_compiles_differently_gets_its_own_code(options, filter_):
    cache = CompiledTemplates()
    render(environment(cache))
    other = environment(cache, **options)
    other.filters["shout"] = filter_
    expected = "<h1>HOUSE!</h1>a, b" if filter_ is not str.upper else "<h1>HOUSE</h1>a, b"
    assert render(other) == expected
    assert cache.hits == 0 and len(cache) == 6


def test_the_cache_keeps_a_bounded_number_of_templates():
    cache = CompiledTemplates(kept=2)
    render(environment(cache))
    assert len(cache) == 2


def test_another_voila_is_refused_with_what_to_check():
    check_voila()  # the installed one
    with pytest.raises(VoilaVersionError, match=r"voila 0\.6\.0: check that NotebookRenderer"):
        check_voila("0.6.0")


# --- the pool's renders, in Voilà's own code ----------------------------------------------


class Server(LoggingConfigurable):
    """What Voilà's pool reads of its application to render a page (voila/app.py)."""

    base_url = server_url = "/"
    port = 0
    notebook_path = None

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root_dir = root
        self.voila_configuration = VoilaConfiguration(
            parent=self, template="homevalue", theme="light", strip_sources=True
        )
        self.template_paths = collect_template_paths(["voila", "nbconvert"], "homevalue")
        self.contents_manager = LargeFileManager(root_dir=root)
        self.kernel_spec_manager = KernelSpecManager()
        self.config_manager = None
        self.app = SimpleNamespace(settings={})


async def page_html(renderer) -> str:
    """The page as Voilà renders it into a pool kernel, with every cell unexecuted."""
    await renderer.initialize()

    async def kernel_start(nb):
        return "kernel"

    async def cells(nb, kernel_id):
        for cell in nb.cells:
            yield cell

    context = {
        "frontend": "voila",
        "main_js": "voila.js",
        "kernel_start": kernel_start,
        "notebook_execute": None,
        "cell_generator": cells,
        "progressive_rendering": False,
    }
    parts = renderer.exporter.generate_from_notebook_node(
        renderer.notebook,
        resources=renderer.resources,
        extra_context=context,
        page_config=renderer.page_config,
    )
    return "".join([html async for html, _ in parts])


@pytest.fixture
def pool(tmp_path, monkeypatch):
    """Voilà's preheated pool on our kernel manager, as voila.json makes it, with no
    kernels (no notebooks at start) and a process-wide template cache of its own."""
    monkeypatch.setattr(rendering, "COMPILED_TEMPLATES", CompiledTemplates())
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [nbformat.v4.new_markdown_cell("# A page"), nbformat.v4.new_code_cell("1")]
    server = Server(str(tmp_path))
    manager_class = voila_kernel_manager_factory(LimitedKernelManager, True, 0)
    manager = manager_class(parent=server)
    nbformat.write(notebook, tmp_path / "page.ipynb")
    return manager


def without_ids(html: str) -> str:
    """The page less what differs in every render (ids made with uuid4)."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", html)


def test_the_pools_second_page_compiles_no_template(pool):
    cache = rendering.COMPILED_TEMPLATES

    async def two_pages() -> tuple[str, str]:
        first = await page_html(pool._notebook_renderer_factory("page.ipynb"))
        compiled = (cache.misses, len(cache))
        second = await page_html(pool._notebook_renderer_factory("page.ipynb"))
        assert cache.misses == compiled[0] and cache.hits >= compiled[1]
        return first, second

    first, second = asyncio.run(two_pages())
    assert len(cache) >= 10  # our index.html.j2 and the lab/base templates it extends
    assert 'class="hv-' in first and "A page" in first
    assert without_ids(second) == without_ids(first)


def test_upstreams_rendering_stays_when_sharing_is_off(pool):
    pool.share_compiled_templates = False
    renderer = pool._notebook_renderer_factory("page.ipynb")
    asyncio.run(page_html(renderer))
    assert renderer.exporter.environment.bytecode_cache is None
    assert len(rendering.COMPILED_TEMPLATES) == 0


def test_the_server_refuses_a_voila_whose_pool_it_cannot_reach(monkeypatch):
    """A Voilà whose pool renders pages another way would leave sharing silently off."""
    monkeypatch.setattr(rendering.voila, "__version__", "0.6.0")
    with pytest.raises(VoilaVersionError, match="0.6.0"):
        voila_kernel_manager_factory(LimitedKernelManager, True, 0)
