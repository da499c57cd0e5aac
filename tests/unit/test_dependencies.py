"""Third-party packages: what their metadata requires decides whether a missing import fails the build;
`exclude`; reading what an app declares."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kiln.analyze.python import analyze
from kiln.deps import declared
from kiln.discover import load_app
from kiln.errors import AnalysisError, AppError
from kiln.interpreter import probe

PYTHON = "/usr/bin/python3.11"

# A distribution "fancy" 1.0 with one required dependency, an extra, and a backport for old Pythons.
FANCY_METADATA = """\
Metadata-Version: 2.1
Name: Fancy
Version: 1.0
Requires-Dist: plainsupport>=1
Requires-Dist: coloredstuff; extra == "color"
Requires-Dist: importlib-metadata; python_version < "3.10"
Requires-Dist: winhelper; sys_platform == "win32"
"""
FANCY_INIT = """\
import plainsupport
import coloredstuff
import importlib_metadata
import winhelper
import msvcrt
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def site_with_fancy(site: Path, with_support: bool) -> None:
    files = {"fancy/__init__.py": FANCY_INIT, "fancy-1.0.dist-info/METADATA": FANCY_METADATA}
    record = ["fancy/__init__.py,,", "fancy-1.0.dist-info/METADATA,,", "fancy-1.0.dist-info/RECORD,,"]
    files["fancy-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    if with_support:
        files["plainsupport/__init__.py"] = "VALUE = 1\n"
        files["plainsupport-2.0.dist-info/METADATA"] = "Metadata-Version: 2.1\nName: plainsupport\nVersion: 2.0\n"
        files["plainsupport-2.0.dist-info/RECORD"] = "plainsupport/__init__.py,,\n"
    write(site, files)


def graph_of(root: Path):
    app = load_app(root)
    return analyze(app, probe(PYTHON))


def test_an_import_the_metadata_requires_fails_naming_the_distribution(tmp_path: Path) -> None:
    site_with_fancy(tmp_path / "vendor", with_support=False)
    write(tmp_path, {"app.py": "import fancy\n", "kiln.toml": 'python_path = ["vendor"]\n'})
    with pytest.raises(AnalysisError) as err:
        graph_of(tmp_path)
    message = str(err.value)
    assert message.startswith("1 import cannot be resolved: plainsupport (needed by fancy)")
    assert "vendor/fancy/__init__.py:1" in message


def test_extras_other_platforms_and_backports_are_left_out(tmp_path: Path) -> None:
    site_with_fancy(tmp_path / "vendor", with_support=True)
    write(tmp_path, {"app.py": "import fancy\n", "kiln.toml": 'python_path = ["vendor"]\n'})
    g = graph_of(tmp_path)
    assert {"fancy", "plainsupport"} <= set(g.modules)
    assert {"coloredstuff", "importlib_metadata", "winhelper", "msvcrt"} <= set(g.optional_left_out)
    assert g.modules["fancy"].origin == "third-party"
    fancy = g.distributions.owner(g.modules["fancy"].path)
    assert fancy is not None and (fancy.name, fancy.version, fancy.requires) == ("fancy", "1.0", ("plainsupport",))


def test_the_apps_own_unresolvable_import_still_fails_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": "import os\nimport nosuchthing_at_all\n", "kiln.toml": ""})
    with pytest.raises(AnalysisError, match=r"nosuchthing_at_all \(imported at .*app.py:2\)"):
        graph_of(tmp_path)


def test_exclude_declares_an_import_never_reached(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app.py": "import os\nif os.environ.get('DEV'):\n    import nosuchthing_at_all.reloader\nimport email\n",
            "kiln.toml": 'exclude = ["nosuchthing_at_all", "email"]\n',
        },
    )
    g = graph_of(tmp_path)
    assert set(g.excluded) == {"nosuchthing_at_all.reloader", "email"}
    assert "email" not in g.modules


def test_exclude_rejects_what_is_not_a_module_name(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": "", "kiln.toml": 'exclude = ["not a module"]\n'})
    with pytest.raises(AppError, match="exclude"):
        load_app(tmp_path)


def test_requirements_txt_with_includes(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "-r base.txt\nflask==3.1.0\n", "base.txt": "# shared\nrequests==2.32.3\n"})
    first = declared.read(tmp_path)
    assert first is not None and first.source == "requirements.txt" and first.file == tmp_path / "requirements.txt"
    assert first.included == ((tmp_path / "base.txt").resolve(),)
    (tmp_path / "base.txt").write_text("requests==2.32.4\n")
    second = declared.read(tmp_path)
    assert second is not None and second.key != first.key  # an included file's change is a new set


def test_requirements_txt_including_a_missing_file(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "-r nowhere.txt\n"})
    with pytest.raises(AppError, match=r"includes nowhere\.txt, which does not exist"):
        declared.read(tmp_path)


def test_pyproject_dependencies_and_uv_lock_pins(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "x"\nversion = "0"\ndependencies = ["fastapi>=0.110", "uvicorn"]\n',
            "uv.lock": """
                version = 1
                [[package]]
                name = "fastapi"
                version = "0.115.0"
                source = { registry = "https://pypi.org/simple" }
                [[package]]
                name = "x"
                version = "0"
                source = { editable = "." }
            """,
        },
    )
    found = declared.read(tmp_path)
    assert found is not None
    assert (found.source, found.requirements, found.constraints) == (
        "pyproject.toml + uv.lock",
        "fastapi>=0.110\nuvicorn\n",
        "fastapi==0.115.0\n",
    )
    assert declared.describe(found) == "fastapi>=0.110, uvicorn (from pyproject.toml + uv.lock)"


def test_no_declared_dependencies(tmp_path: Path) -> None:
    assert declared.read(tmp_path) is None
    write(tmp_path, {"pyproject.toml": '[project]\nname = "x"\nversion = "0"\n'})
    assert declared.read(tmp_path) is None


def test_app_data_defaults_narrowing_and_single_files(tmp_path: Path) -> None:
    from kiln.image.build import APP_DIR
    from kiln.image.data import Placement, app_data
    from kiln.image.rootfs import RootFS

    write(
        tmp_path / "app",
        {
            "app.py": "",
            "kiln.toml": "",
            "templates/index.html": "<p>",
            "static/style.css": "body{}",
            "notes.txt": "x",
            "migrations/versions/1975ea83b712_create.py": "revision = '1975ea83b712'\n",  # loaded by path
            "scripts/tool.py": "",  # a module: laid out by the import analysis
            ".git/config": "x",
            "__pycache__/app.cpython-311.pyc": "x",
            ".venv/pyvenv.cfg": "x",
            "env2/pyvenv.cfg": "x",
            "env2/lib/site.py": "x",
        },
    )
    app_root = tmp_path / "app"

    def copied(app_dir: Path, toml: str = "") -> set[str]:
        (app_dir / "kiln.toml").write_text(toml)
        root = RootFS(tmp_path / f"root-{len(list(tmp_path.iterdir()))}")
        app_data(load_app(app_dir), root, Placement(app_dir, APP_DIR))
        return {str(p) for p in root.files() if str(p).startswith("/app/")}

    assert copied(app_root) == {
        "/app/templates/index.html", "/app/static/style.css", "/app/notes.txt",
        "/app/migrations/versions/1975ea83b712_create.py",
    }  # fmt: skip
    assert copied(app_root, 'data = ["templates/**"]\n') == {"/app/templates/index.html"}
    root = RootFS(tmp_path / "single")
    assert app_data(load_app(app_root / "app.py"), root, Placement(app_root, APP_DIR)) == []


def test_framework_hints_keep_string_imports_that_exist(tmp_path: Path) -> None:
    from kiln.analyze.hints import FRAMEWORK_HINTS

    # A stand-in for uvicorn: config.py names its loops and protocols only in strings.
    write(
        tmp_path / "vendor",
        {
            "uvicorn/__init__.py": "from uvicorn.config import Config\n",
            "uvicorn/config.py": 'LOOPS = {"asyncio": "uvicorn.loops.asyncio:asyncio_setup"}\nclass Config: ...\n',
            "uvicorn/loops/__init__.py": "",
            "uvicorn/loops/auto.py": "",
            "uvicorn/loops/asyncio.py": "import asyncio\n",
            "uvicorn/protocols/__init__.py": "",
            "uvicorn/protocols/http/__init__.py": "",
            "uvicorn/protocols/http/h11_impl.py": "",
        },
    )
    write(tmp_path, {"app.py": "import uvicorn\n", "kiln.toml": 'python_path = ["vendor"]\n'})
    g = graph_of(tmp_path)
    assert {"uvicorn.loops.auto", "uvicorn.loops.asyncio", "uvicorn.protocols.http.h11_impl", "asyncio"} <= set(
        g.modules
    )
    # hints that name modules this install lacks are not errors, and are not invented
    assert "uvicorn.lifespan.on" in FRAMEWORK_HINTS["uvicorn.config"] and "uvicorn.lifespan.on" not in g.modules
    assert g.why("uvicorn.loops.asyncio")[-2:] == ["uvicorn.config", "uvicorn.loops.asyncio"]


def test_a_preferred_import_that_fails_when_run_keeps_its_fallback(tmp_path: Path) -> None:
    # uvicorn.supervisors: `try: from .watchfilesreload import X` / `except ImportError: from .statreload import X`,
    # where watchfilesreload imports watchfiles, an extra that is not installed.
    write(
        tmp_path / "vendor",
        {
            "sup/__init__.py": "try:\n    from sup.fancy import R\nexcept ImportError:\n    from sup.plain import R\n",
            "sup/fancy.py": "import notinstalled_extra\nR = 1\n",
            "sup/plain.py": "R = 2\n",
            "sup-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: sup\nVersion: 1.0\n"
            'Requires-Dist: notinstalled-extra; extra == "fancy"\n',
            "sup-1.0.dist-info/RECORD": "sup/__init__.py,,\nsup/fancy.py,,\nsup/plain.py,,\n",
        },
    )
    write(tmp_path, {"app.py": "import sup\n", "kiln.toml": 'python_path = ["vendor"]\n'})
    g = graph_of(tmp_path)
    assert {"sup.fancy", "sup.plain"} <= set(g.modules)
    assert "notinstalled_extra" in g.optional_left_out


def test_django_names_its_parts_in_strings(tmp_path: Path) -> None:
    # A stand-in for Django: its defaults and the project's settings name modules only in strings.
    write(
        tmp_path / "vendor",
        {
            "django/__init__.py": "",
            "django/conf/__init__.py": "from django.conf import global_settings\n",
            "django/conf/global_settings.py": 'CACHE = "django.core.cache.backends.locmem.X"\n',
            "django/core/__init__.py": "",
            "django/core/cache/__init__.py": "",
            "django/core/cache/backends/__init__.py": "",
            "django/core/cache/backends/locmem.py": "class X: ...\n",
            "django/core/cache/backends/redis.py": "import redis\n",
        },
    )
    write(
        tmp_path,
        {
            "manage.py": 'import os\nimport django.conf\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n',  # noqa: E501
            "mysite/__init__.py": "",
            "mysite/settings.py": 'INSTALLED_APPS = ["blog"]\nROOT_URLCONF = "mysite.urls"\n',
            "mysite/urls.py": "",
            "blog/__init__.py": "",
            "blog/apps.py": "",
            "blog/models.py": "",
            "blog/templatetags/__init__.py": "",
            "blog/templatetags/blog_tags.py": "",
            "blog/templatetags/more_tags.py": "",
            "kiln.toml": 'entry = "manage.py"\npython_path = ["vendor"]\n',
        },
    )
    g = graph_of(tmp_path)
    assert {
        "mysite.settings",
        "mysite.urls",
        "blog.apps",
        "blog.models",
        "blog.templatetags.blog_tags",
        "blog.templatetags.more_tags",
        "django.core.cache.backends.locmem",
    } <= set(g.modules)
    assert "django.core.cache.backends.redis" not in g.modules  # named by no string


def test_the_django_rule_stays_out_of_other_apps(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": 'NAME = "email.mime.text"\n', "helpers.py": "", "kiln.toml": ""})
    assert "email.mime.text" not in graph_of(tmp_path).modules


def test_a_plain_python_project_needs_no_kiln_toml(tmp_path: Path) -> None:
    project = tmp_path / "My Shop"
    write(project, {"requirements.txt": "flask\n", "main.py": "print('hi')\n"})
    app = load_app(project)
    assert (app.config.entry, app.name, app.config_file, app.single_file) == ("main.py", "my-shop", None, False)
    write(tmp_path / "empty", {"notes.txt": ""})
    with pytest.raises(
        AppError, match=r"no kiln.toml, no \[tool.kiln\] in pyproject.toml, no Procfile, .*none of app.py"
    ):
        load_app(tmp_path / "empty")


def test_a_single_file_app_ignores_what_lies_beside_it(tmp_path: Path) -> None:
    from kiln.image.build import analyze_python

    # A requirements.txt that would fail to install proves it is never read for a lone .py file.
    write(tmp_path, {"tool.py": "import json\n", "requirements.txt": "kiln-no-such-distribution-xyz\n"})
    app = load_app(tmp_path / "tool.py")
    assert (app.name, app.single_file) == ("tool", True)
    assert analyze_python(app).dependencies_from is None


def test_a_local_path_requirement_is_keyed_by_its_content(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "./mypkg\nflask\n", "mypkg/setup.py": "x = 1\n", "mypkg/build/junk": "1"})
    first = declared.read(tmp_path)
    (tmp_path / "mypkg" / "build" / "junk").write_text("2")  # pip's own build output is not the source
    assert declared.read(tmp_path) == first
    (tmp_path / "mypkg" / "setup.py").write_text("x = 2\n")
    second = declared.read(tmp_path)
    assert first is not None and second is not None and second.key != first.key


def site_with_server(site: Path) -> None:
    """A stand-in for uvicorn[standard] and a plugin host: "srv" imports its fast loop only optionally,
    and asks for "fastloop" through its "standard" extra; "host" loads the plugins of group "host.plugins"
    through pluggy's call; "plug" declares one."""
    files = {
        "srv/__init__.py": "from srv import config\n",
        "srv/config.py": "try:\n    import fastloop\nexcept ImportError:\n    fastloop = None\n",
        "srv/protocols/__init__.py": "",
        "srv/protocols/fast_impl.py": "import fastloop\nimport gunicorn_not_here\n",
        "srv/templates/page.html": "<p>{{ x }}</p>\n",
        "srv/_data/__init__.py": "",
        "srv/_data/unicode17-0-0.py": "TABLE = ()\n",  # rich's: loaded by import_module with a computed name
        "srv/tests/__init__.py": "",
        "srv/tests/test_srv.py": "import pytest\n",
        "srv-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: srv\nVersion: 1.0\n"
        'Requires-Dist: fastloop>=1; extra == "standard"\n',
        "fastloop/__init__.py": "from fastloop import _core\n",
        "fastloop/_core.py": "",
        "fastloop-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fastloop\nVersion: 1.0\n",
        "host/__init__.py": "def load(pm):\n    pm.load_setuptools_entrypoints('host.plugins')\n",
        "host-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: host\nVersion: 1.0\n",
        "plug/__init__.py": "",
        "plug/hooks.py": "import json\n",
        "plug-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: plug\nVersion: 1.0\n",
        "plug-1.0.dist-info/entry_points.txt": "[host.plugins]\nplug = plug.hooks\n",
    }
    for dist in ("srv", "fastloop", "host", "plug"):
        own = sorted(f for f in files if f.startswith((f"{dist}/", f"{dist}-1.0.dist-info/")))
        files[f"{dist}-1.0.dist-info/RECORD"] = "".join(f"{f},,\n" for f in own)
    write(site, files)


def graph_with(root: Path, requested: tuple[tuple[str, tuple[str, ...]], ...] = (), toml: str = ""):
    app = load_app(root)
    return analyze(app, probe(PYTHON), (root / "site",), requested)


def test_a_distribution_the_app_reaches_is_kept_whole_less_its_tests(tmp_path: Path) -> None:
    site_with_server(tmp_path / "site")
    write(tmp_path, {"app.py": "import srv\n", "kiln.toml": ""})
    g = graph_with(tmp_path)
    kept = {"srv", "srv.config", "srv.protocols", "srv.protocols.fast_impl", "srv._data.unicode17-0-0"}
    assert kept <= set(g.modules)
    assert "srv" in g.whole and not {"srv.tests", "srv.tests.test_srv", "pytest"} & set(g.modules)
    # an optional speedup the user did not ask for stays out, and what the whole imports is no error
    assert "fastloop" not in g.modules and {"fastloop", "gunicorn_not_here"} <= set(g.optional_left_out)


def test_trim_modules_keeps_only_what_the_imports_reach(tmp_path: Path) -> None:
    site_with_server(tmp_path / "site")
    write(tmp_path, {"app.py": "import srv\n", "kiln.toml": 'trim = "modules"\n'})
    g = graph_with(tmp_path)
    assert {"srv", "srv.config"} <= set(g.modules) and "srv.protocols.fast_impl" not in g.modules
    assert g.whole == ()


def test_what_the_user_asked_for_through_an_extra_is_kept(tmp_path: Path) -> None:
    site_with_server(tmp_path / "site")
    write(tmp_path, {"app.py": "import srv\n", "kiln.toml": ""})
    g = graph_with(tmp_path, (("srv", ("standard",)),))
    assert g.requested == ("fastloop", "srv")
    assert {"fastloop", "fastloop._core", "srv.protocols.fast_impl"} <= set(g.modules)
    assert "fastloop" not in g.optional_left_out


def test_a_requested_distribution_nothing_imports_is_a_note_not_a_removal(tmp_path: Path) -> None:
    site_with_server(tmp_path / "site")
    write(tmp_path, {"app.py": "import json\n", "kiln.toml": ""})
    g = graph_with(tmp_path, (("fastloop", ()),))
    assert "fastloop._core" in g.modules
    assert any(n.startswith("asked for, and imported by no module of the image: fastloop") for n in g.notes)


def test_plugins_of_a_group_the_app_loads_are_kept(tmp_path: Path) -> None:
    site_with_server(tmp_path / "site")
    write(tmp_path, {"app.py": "import host\n", "kiln.toml": ""})
    g = graph_with(tmp_path)
    assert g.entry_point_groups == {"host.plugins": "host"}
    assert {"plug", "plug.hooks"} <= set(g.modules)
    assert g.why("plug.hooks")[0].startswith("host (entry point host.plugins: plug of plug)")


def test_a_plugin_naming_a_missing_module_is_one_line(tmp_path: Path) -> None:
    site_with_server(tmp_path / "site")
    (tmp_path / "site" / "plug-1.0.dist-info" / "entry_points.txt").write_text("[host.plugins]\nplug = plug.gone\n")
    write(tmp_path, {"app.py": "import host\n", "kiln.toml": ""})
    with pytest.raises(AnalysisError, match=r"^entry point plug of plug \(group host.plugins, loaded by host\) "
                       r"names plug.gone, which is not installed$"):  # fmt: skip
        graph_with(tmp_path)


def test_a_namespace_several_distributions_share_says_nothing_of_its_other_modules(tmp_path: Path) -> None:
    """pyramid requires zope.interface and zope.deprecation, which share the `zope` namespace: its import of
    zope.component (not installed, not required) in a function is listed, not 'needed by pyramid'."""
    files = {
        "pyr/__init__.py": "from pyr import zca\n",
        "pyr/zca.py": "def hook():\n    from zope.component import getSiteManager\n",
        "pyr-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: pyr\nVersion: 1.0\n"
        "Requires-Dist: zope.interface\nRequires-Dist: zope.deprecation\n",
        "zope/interface/__init__.py": "",
        "zope.interface-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: zope.interface\nVersion: 1.0\n",
        "zope/deprecation/__init__.py": "",
        "zope.deprecation-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: zope.deprecation\nVersion: 1.0\n",
    }
    tops = (("pyr", "pyr/"), ("zope.interface", "zope/interface/"), ("zope.deprecation", "zope/deprecation/"))
    for dist, top in tops:
        own = sorted(f for f in files if f.startswith((top, f"{dist}-1.0.dist-info/")))
        files[f"{dist}-1.0.dist-info/RECORD"] = "".join(f"{f},,\n" for f in own)
    write(tmp_path / "site", files)
    write(tmp_path, {"app.py": "import pyr\n", "kiln.toml": ""})
    g = graph_with(tmp_path)
    assert "zope.component" in g.optional_left_out and "pyr.zca" in g.modules
