"""The copy-paste configuration of a repository's setup panel, for every client.

Pure text from (base URL, repository, token): no Flask, no database, so each client's
lines are tested without a server and the page template only lays them out. The texts
follow what each client really reads (docs: CLIENTS.md, section 5): index URLs end in
`/simple/`, upload URLs are the repository's URL with its trailing slash, pip trusts a
plain-http host only when told to, and pdm skips one unless `verify_ssl = false`.

Where the token goes: files that live in a project and end up in its git history
(`requirements.txt`, `pyproject.toml`) name an environment variable; files and commands
of the user's own account (`pip.conf`, `~/.pypirc`, `poetry config`, a publish command)
hold the token itself. Without a fresh token the placeholder `<token>` stands in; a
public repository's install lines need no credentials at all.

The base URL is used as an opaque prefix (plain concatenation) so that the page can be
rendered once with a marker in its place and filled in per request.
"""

from __future__ import annotations

import dataclasses
import json

from minirepo.clientconfig import INDEX_NAME, Target, pip_settings, pypirc_settings
from minirepo.credentials import TOKEN_USERNAME

PLACEHOLDER = "<token>"
TOKEN_VARIABLE = "MINIREPO_TOKEN"  # noqa: S105 - a variable's name, not a secret
PACKAGE = "PACKAGE"
# uv's variables for the index named INDEX_NAME: upper case, `-` as `_`.
UV_VARIABLE = f"UV_INDEX_{INDEX_NAME.upper().replace('-', '_')}"


@dataclasses.dataclass(frozen=True)
class Snippet:
    id: str
    label: str
    text: str


@dataclasses.dataclass(frozen=True)
class Client:
    name: str
    snippets: tuple[Snippet, ...]


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a panel is for: installs from `install_repo`, uploads to `upload_repo` (None:
    the repository takes none, a proxy or a group without an upload target)."""

    install_repo: str
    upload_repo: str | None
    token: str | None = None  # a secret just made, shown once; None: the placeholder
    private: bool = False  # installs need credentials too

    @property
    def install_credential(self) -> str | None:
        if self.token is not None:
            return self.token
        return PLACEHOLDER if self.private else None

    @property
    def publish_credential(self) -> str:
        return self.token or PLACEHOLDER

    @property
    def account_credential(self) -> str | None:
        """What a client keeping one credential for installs and publishes (uv's
        variables, poetry's http-basic) is given: the install one, else the publish one
        when the repository takes uploads; None when neither needs any."""
        return self.install_credential or (self.publish_credential if self.upload_repo else None)

    def clients(self, base_url: str) -> list[Client]:
        """Every client's snippets for the server at `base_url` (no trailing slash)."""
        urls = _Urls(base_url.rstrip("/"), self)
        return [
            _pip(urls),
            _uv(urls),
            _poetry(urls),
            _pdm(urls),
            *([_twine(urls), _hatch(urls)] if self.upload_repo else []),
            _keyring(urls),
        ]

    def install_commands(self, base_url: str) -> list[Snippet]:
        """pip's and uv's one-line installs: what the home page shows."""
        pip, uv = self.clients(base_url)[:2]
        return [pip.snippets[0], uv.snippets[1]]


@dataclasses.dataclass(frozen=True)
class _Urls:
    base: str
    setup: Setup

    def target(self, token: str | None) -> Target:
        upload = self.setup.upload_repo or self.setup.install_repo
        return Target(f"{self.base}/", self.setup.install_repo, upload, token)

    @property
    def index(self) -> str:
        return self.target(None).index_url

    @property
    def upload(self) -> str:
        return self.target(None).upload_url

    @property
    def trusted_host(self) -> str | None:
        return self.target(None).trusted_host

    def index_with(self, password: str | None) -> str:
        """The index URL with `__token__:<password>@`, the form pip, uv and pdm read."""
        if password is None:
            return self.index
        return with_userinfo(self.index, f"{TOKEN_USERNAME}:{password}")

    def index_in_project(self, credential: str | None) -> str:
        """The index URL for a file kept in a project: the token's variable, never the
        token itself, since the file ends up in git history."""
        return self.index_with(credential and f"${{{TOKEN_VARIABLE}}}")

    @property
    def trusted_flag(self) -> str:
        """pip's ` --trusted-host HOST` for a plain-http server, else nothing."""
        return f" --trusted-host {self.trusted_host}" if self.trusted_host else ""


def with_userinfo(url: str, userinfo: str) -> str:
    """`url` with user info put after its scheme (string work only, see the docstring)."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme}://{userinfo}@{rest}" if separator else url


def toml_string(value: str) -> str:
    """A TOML basic string; URLs need no escapes, anything else gets JSON's (TOML's own)."""
    if '"' in value or "\\" in value:
        return json.dumps(value)
    return f'"{value}"'


def _snippet(client: str, part: str, label: str, lines: list[str]) -> Snippet:
    return Snippet(f"setup-{client}-{part}", label, "\n".join(lines))


def _export(value: str) -> str:
    return f"export {TOKEN_VARIABLE}={value}"


def _pip(urls: _Urls) -> Client:
    setup = urls.setup
    credential = setup.install_credential
    trusted = urls.trusted_host
    requirements = [f"--index-url {urls.index_in_project(credential)}"]
    if trusted:
        requirements.append(f"--trusted-host {trusted}")
    snippets = [
        _snippet(
            "pip",
            "command",
            "pip, command line",
            [f"pip install --index-url {urls.index_with(credential)}{urls.trusted_flag} {PACKAGE}"],
        ),
        Snippet("setup-pip-conf", "pip.conf", pip_settings(urls.target(credential)).rstrip("\n")),
        _snippet("pip", "requirements", "requirements.txt, first lines", requirements),
    ]
    if credential is not None:
        snippets.append(
            _snippet(
                "pip", "env", "requirements.txt: the token, in the shell", [_export(credential)]
            )
        )
    return Client("pip", tuple(snippets))


def _uv(urls: _Urls) -> Client:
    setup = urls.setup
    index = [
        "[[tool.uv.index]]",
        f"name = {toml_string(INDEX_NAME)}",
        f"url = {toml_string(urls.index)}",
    ]
    if setup.upload_repo:
        index.append(f"publish-url = {toml_string(urls.upload)}")
    index += [
        "explicit = true",
        "",
        "[tool.uv.sources]",
        f"{PACKAGE} = {{ index = {toml_string(INDEX_NAME)} }}",
    ]
    snippets = [
        _snippet("uv", "pyproject", "pyproject.toml", index),
        _snippet(
            "uv",
            "pip",
            "uv pip, command line",
            [f"uv pip install --index-url {urls.index_with(setup.install_credential)} {PACKAGE}"],
        ),
    ]
    credential = setup.account_credential
    if credential is not None:
        snippets.append(
            _snippet(
                "uv",
                "env",
                "uv: credentials, in the shell",
                [
                    f"export {UV_VARIABLE}_USERNAME={TOKEN_USERNAME}",
                    f"export {UV_VARIABLE}_PASSWORD={credential}",
                ],
            )
        )
    if setup.upload_repo:
        publish = (
            f"uv publish --publish-url {urls.upload} --check-url {urls.index} "
            f"--token {setup.publish_credential} dist/*"
        )
        snippets.append(_snippet("uv", "publish", "uv publish", [publish]))
    return Client("uv", tuple(snippets))


def _poetry(urls: _Urls) -> Client:
    setup = urls.setup
    snippets = [
        _snippet(
            "poetry",
            "source",
            "poetry: the source, in a project",
            [
                f"poetry source add --priority=explicit {INDEX_NAME} {urls.index}",
                f"poetry add --source {INDEX_NAME} {PACKAGE}",
            ],
        )
    ]
    credential = setup.account_credential
    if credential is not None:
        snippets.append(
            _snippet(
                "poetry",
                "auth",
                "poetry: credentials",
                [f"poetry config http-basic.{INDEX_NAME} {TOKEN_USERNAME} {credential}"],
            )
        )
    if setup.upload_repo:
        snippets.append(
            _snippet(
                "poetry",
                "publish",
                "poetry publish",
                [
                    f"poetry config repositories.{INDEX_NAME} {urls.upload}",
                    f"poetry publish -r {INDEX_NAME}",
                ],
            )
        )
    return Client("poetry", tuple(snippets))


def _pdm(urls: _Urls) -> Client:
    """pdm expands `${VAR}` in a source's `url` only (not in username/password)."""
    setup = urls.setup
    credential = setup.install_credential
    source = [
        "[[tool.pdm.source]]",
        f"name = {toml_string(INDEX_NAME)}",
        f"url = {toml_string(urls.index_in_project(credential))}",
    ]
    if urls.trusted_host:
        source.append("verify_ssl = false  # plain http: else pdm skips the index")
    snippets = [_snippet("pdm", "source", "pyproject.toml", source)]
    if credential is not None:
        snippets.append(
            _snippet("pdm", "env", "pdm: the token, in the shell", [_export(credential)])
        )
    if setup.upload_repo:
        publish = f"pdm publish -r {urls.upload} -u {TOKEN_USERNAME} -P {setup.publish_credential}"
        snippets.append(_snippet("pdm", "publish", "pdm publish", [publish]))
    return Client("pdm", tuple(snippets))


def _twine(urls: _Urls) -> Client:
    pypirc = pypirc_settings(urls.target(urls.setup.publish_credential)).rstrip("\n")
    return Client(
        "twine",
        (
            Snippet("setup-twine-pypirc", "~/.pypirc", pypirc),
            _snippet("twine", "upload", "twine upload", [f"twine upload -r {INDEX_NAME} dist/*"]),
        ),
    )


def _hatch(urls: _Urls) -> Client:
    publish = (
        f"hatch publish -r {urls.upload} -u {TOKEN_USERNAME} -a {urls.setup.publish_credential}"
    )
    return Client("hatch", (_snippet("hatch", "publish", "hatch publish", [publish]),))


def _keyring(urls: _Urls) -> Client:
    """The token in the system keyring, asked for at the prompt: never on a command line.
    pip looks up the index URL as configured; twine and uv publish the upload URL."""
    setup = urls.setup
    lines = [f"keyring set {urls.index} {TOKEN_USERNAME}"]
    if setup.upload_repo:
        lines.append(f"keyring set {urls.upload} {TOKEN_USERNAME}")
    install = (
        "pip install --keyring-provider import --index-url "
        f"{with_userinfo(urls.index, TOKEN_USERNAME)}{urls.trusted_flag} {PACKAGE}"
    )
    return Client(
        "keyring",
        (
            _snippet("keyring", "set", "keyring: store the token (it asks for it)", lines),
            _snippet("keyring", "pip", "pip with the keyring", [install]),
        ),
    )
