"""Copy-ready client settings for a package: pip, uv, ``.pypirc`` and ``pip.conf``.

URLs are absolute (``PACKYARD_BASE_URL`` or the request's host).  For anything that is not
public, commands carry ``__token__:$PACKYARD_TOKEN`` as credentials: pasted into a shell
they take the token from that variable, with no placeholder to edit (and nothing that a
shell reads as a redirection).  Files (``pip.conf``, ``.pypirc``) hold no credential:
pip reads ``~/.netrc``, twine ``TWINE_PASSWORD``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from app.models import Group, Package, Project
from app.web.ui.common import external_url

TOKEN_VARIABLE = "PACKYARD_TOKEN"
TOKEN_PLACEHOLDER = f"${TOKEN_VARIABLE}"  # expanded by the shell the command is pasted in


@dataclass(frozen=True)
class IndexUrl:
    label: str  # "project team/lib" or "group team"
    url: str


@dataclass(frozen=True)
class InstallInstructions:
    requirement: str
    indexes: list[IndexUrl]  # the project's, then each group's from nearest to root
    upload_url: str
    plain_index_url: str  # the project's index without credentials, for files

    @property
    def index_url(self) -> str:
        return self.indexes[0].url

    @property
    def pip(self) -> str:
        return f"pip install --index-url {self.index_url} {self.requirement}"

    @property
    def uv(self) -> str:
        return f"uv pip install --index-url {self.index_url} {self.requirement}"

    @property
    def uv_add(self) -> str:
        return f"uv add --index packyard={self.index_url} {self.requirement}"

    @property
    def pypirc(self) -> str:
        return (
            "[distutils]\nindex-servers =\n    packyard\n\n[packyard]\n"
            f"repository = {self.upload_url}\nusername = __token__\n"
            f"# password: twine reads TWINE_PASSWORD (export TWINE_PASSWORD=${TOKEN_VARIABLE})\n"
        )

    @property
    def pip_conf(self) -> str:
        return f"[global]\nindex-url = {self.plain_index_url}\n"


def install_instructions(
    project: Project, groups: list[Group], package: Package
) -> InstallInstructions:
    """``groups`` are the project's group and its ancestors, nearest first."""
    # The package is public only if the project and every group that holds it are.
    private = any(row.visibility != "public" for row in (project, *groups))
    indexes = [
        IndexUrl(
            f"project {project.full_path}",
            _with_credentials(
                external_url(f"api/v4/projects/{project.id}/packages/pypi/simple/"), private
            ),
        )
    ]
    indexes += [
        IndexUrl(
            f"group {group.full_path}",
            _with_credentials(
                external_url(f"api/v4/groups/{group.id}/-/packages/pypi/simple/"), private
            ),
        )
        for group in groups
    ]
    return InstallInstructions(
        requirement=f"{package.name}=={package.version}",
        indexes=indexes,
        upload_url=external_url(f"api/v4/projects/{project.id}/packages/pypi"),
        plain_index_url=external_url(f"api/v4/projects/{project.id}/packages/pypi/simple/"),
    )


def _with_credentials(url: str, private: bool) -> str:
    if not private:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"__token__:{TOKEN_PLACEHOLDER}@{parts.netloc}"))
