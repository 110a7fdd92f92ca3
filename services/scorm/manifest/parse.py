"""Read a SCORM ``imsmanifest.xml`` into what the platform needs: version, title, SCOs and the item tree.

Pure: bytes in, a :class:`Manifest` out, no I/O. Every refusal is a :class:`ManifestError` whose message says
what is wrong and what to fix; oddities that do not stop a learner are collected in ``Manifest.warnings``.

Rules (see ``docs/scorm-import.md`` for the reasoning):

- The XML is parsed with defusedxml with DTDs forbidden: a DOCTYPE, an entity declaration or an external
  reference refuses the manifest (XXE, "billion laughs").
- Version from ``metadata/schemaversion``; without a known value, from the namespaces (``adlcp_rootv1p2`` is
  1.2; ``adlcp_v1p3``/``imscp_v1p1``/``imsss`` is 2004, "4th" when a 4th-edition-only construct appears,
  otherwise "3rd": 2nd and 3rd Edition share their namespaces, so 3rd is the assumption).
- Default organization from ``organizations/@default``; if it does not resolve, the first organization and a
  warning. No organization at all: every SCO resource becomes a SCO (as Moodle does).
- Items are walked iteratively in document order; ``position`` is the 0-based pre-order index of the item in
  the organization and ``parent_identifier`` the enclosing item (``None`` at the top level).
- Launch URL = xml:base of ``<manifest>`` + ``<resources>`` + ``<resource>`` + ``href`` (concatenated, with a
  ``/`` between parts when missing), normalised, then the item's ``parameters`` joined by the CAM rules.
  Every launch path must stay inside the package.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

SCORM_VERSIONS = ("1.2", "2004-2nd", "2004-3rd", "2004-4th")
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024

_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_VERSION_LABELS = {
    "1.2": "SCORM 1.2",
    "2004-2nd": "SCORM 2004 2nd Edition",
    "2004-3rd": "SCORM 2004 3rd Edition",
    "2004-4th": "SCORM 2004 4th Edition",
}


@dataclass(frozen=True)
class Sco:
    identifier: str
    title: str
    launch_url: str
    parameters: str | None
    mastery_score: float | None
    passing_score_scaled: float | None
    position: int
    parent_identifier: str | None
    resource_identifier: str


@dataclass(frozen=True)
class ManifestItem:
    identifier: str
    title: str
    parent_identifier: str | None
    position: int
    resource_identifier: str | None
    is_sco: bool
    launch_url: str | None


@dataclass(frozen=True)
class Manifest:
    scorm_version: str
    title: str
    organization_identifier: str | None
    scos: list[Sco]
    items: list[ManifestItem]
    assets: list[str]
    referenced_files: list[str]
    warnings: list[str] = field(default_factory=list)


class ManifestError(ValueError):
    """The manifest cannot be used; the message says what is wrong and what to fix."""


#: a path written on Windows: a drive letter (``C:\\...``, ``C:/...``) or a backslash separator
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:[\\/]|.*\\)")


class _OutsidePackage(ValueError):
    """A URL in the manifest does not point to a file inside the package."""


@dataclass
class _Resource:
    identifier: str
    scorm_type: str  # "sco" or "asset"
    base: str
    href: str | None
    element: Element


# --- entry point ----------------------------------------------------------------------------------------------


def parse_manifest(xml_bytes: bytes, max_bytes: int = DEFAULT_MAX_MANIFEST_BYTES) -> Manifest:
    """Parse ``imsmanifest.xml``; raises :class:`ManifestError` for anything that cannot be imported."""
    if len(xml_bytes) > max_bytes:
        raise ManifestError(
            f"imsmanifest.xml is {len(xml_bytes):,} bytes, over the {max_bytes:,}-byte limit; "
            "a real manifest is far smaller, so check that the right file is named imsmanifest.xml"
        )
    root = _parse_xml(xml_bytes)
    if _local(root.tag) != "manifest":
        raise ManifestError(
            f"the root element of imsmanifest.xml is <{_local(root.tag)}>, not <manifest>; "
            "export the package again as SCORM 1.2 or 2004"
        )
    warnings: list[str] = []
    version = _detect_version(root, warnings)
    manifest_base = root.get(_XML_BASE, "")
    resources_element = _child(root, "resources")
    resources = _read_resources(resources_element, manifest_base) if resources_element is not None else {}
    for resource in resources.values():
        if resource.scorm_type == "unknown":
            warnings.append(
                f"resource '{resource.identifier}' has no adlcp:scormType 'sco' or 'asset'; treated as an asset"
            )
            resource.scorm_type = "asset"

    collection = _sequencing_collection(root)
    organization = _default_organization(root, warnings)
    if organization is None:
        warnings.append(
            "the manifest has no <organization>; every SCO resource is offered as its own SCO, in document order"
        )
        items: list[ManifestItem] = []
        scos = _scos_without_organization(resources)
        organization_identifier = None
        title = ""
    else:
        organization_identifier = organization.get("identifier")
        items, scos = _walk_items(organization, resources, version, collection, warnings)
        title = _title(organization)
        if not title:  # the first item's own title (not its identifier, which items fall back to)
            first = next(iter(_children(organization, "item")), None)
            title = _title(first) if first is not None else ""
    title = title or root.get("identifier", "").strip() or "Untitled package"
    if not scos:
        launchable = [item.identifier for item in items if item.launch_url is not None]
        warnings.append(
            "the package has no SCO (no resource with adlcp:scormType 'sco'), so nothing in it reports progress "
            "or scores" + (f"; its {len(launchable)} launchable item(s) (e.g. '{launchable[0]}') are assets"
                           if launchable else "") + "; export it again as SCORM with tracking")

    return Manifest(
        scorm_version=version,
        title=title,
        organization_identifier=organization_identifier,
        scos=scos,
        items=items,
        assets=[r.identifier for r in resources.values() if r.scorm_type != "sco"],
        referenced_files=_referenced_files(root, manifest_base, resources, warnings),
        warnings=warnings,
    )


def join_parameters(url: str, parameters: str | None) -> str:
    """Append an item's ``parameters`` to a launch URL by the SCORM CAM rules.

    Leading ``?`` and ``&`` are stripped from the parameters. A ``#fragment`` is appended as-is (and dropped if
    the URL already has a fragment). Otherwise ``?`` or, when the URL already has a query, ``&`` joins them;
    an existing fragment of the URL stays at the end, where browsers expect it.
    """
    if not parameters:
        return url
    cleaned = parameters.lstrip("?&")
    if not cleaned:
        return url
    if cleaned.startswith("#"):
        return url if "#" in url else url + cleaned
    before_fragment, hash_mark, fragment = url.partition("#")
    separator = "&" if "?" in before_fragment else "?"
    return f"{before_fragment}{separator}{cleaned}{hash_mark}{fragment}"


def package_path(url: str) -> str:
    """The file inside the package that a relative URL names: query and fragment dropped, %-escapes decoded,
    ``.``/``..`` resolved. Raises ValueError if it names nothing inside the package."""
    return _package_path(url)


# --- XML --------------------------------------------------------------------------------------------------------


def _parse_xml(xml_bytes: bytes) -> Element:
    try:
        return fromstring(xml_bytes, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        raise ManifestError(
            "imsmanifest.xml contains a <!DOCTYPE> declaration, which is refused because DTDs allow entity "
            "expansion attacks; remove the DOCTYPE line (SCORM manifests use XML Schema, not DTDs)"
        ) from exc
    except EntitiesForbidden as exc:
        raise ManifestError(
            "imsmanifest.xml declares XML entities, which are refused because they allow entity expansion "
            "attacks; remove the <!ENTITY> declarations"
        ) from exc
    except ExternalReferenceForbidden as exc:
        raise ManifestError(
            "imsmanifest.xml refers to an external entity or DTD, which is refused; remove the reference"
        ) from exc
    except ParseError as exc:
        raise ManifestError(
            f"imsmanifest.xml is not well-formed XML ({exc}); fix the XML at that position and upload again"
        ) from exc


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _local(tag: str) -> str:
    return _split(tag)[1]


def _children(element: Element, local: str) -> list[Element]:
    return [child for child in element if isinstance(child.tag, str) and _local(child.tag) == local]


def _child(element: Element, local: str) -> Element | None:
    for child in element:
        if isinstance(child.tag, str) and _local(child.tag) == local:
            return child
    return None


def _child_ci(element: Element, local: str) -> Element | None:
    """A child whose local name matches case-insensitively (authoring tools disagree on adlcp casing)."""
    wanted = local.lower()
    for child in element:
        if isinstance(child.tag, str) and _local(child.tag).lower() == wanted:
            return child
    return None


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _text(element: Element | None, local: str) -> str | None:
    if element is None:
        return None
    child = _child(element, local)
    return _clean("".join(child.itertext())) if child is not None else None


def _title(element: Element) -> str:
    return _text(element, "title") or ""


# --- version ------------------------------------------------------------------------------------------------------


def _detect_version(root: Element, warnings: list[str]) -> str:
    declared = _text(_child(root, "metadata"), "schemaversion")
    if declared:
        version = _version_from_schemaversion(declared)
        if version:
            return version
    guessed = _version_from_namespaces(root)
    if guessed is None:
        raise ManifestError(
            "cannot tell which SCORM version this package is: metadata/schemaversion is "
            f"{repr(declared) if declared else 'missing'} and no SCORM namespace (adlcp_rootv1p2 for 1.2, "
            "adlcp_v1p3 for 2004) is used; add <metadata><schemaversion>1.2</schemaversion></metadata> "
            "(or '2004 4th Edition')"
        )
    if declared:
        warnings.append(
            f"metadata/schemaversion {declared!r} is not a SCORM version; "
            f"{_VERSION_LABELS[guessed]} was assumed from the XML namespaces"
        )
    else:
        warnings.append(
            f"the manifest has no metadata/schemaversion; {_VERSION_LABELS[guessed]} was assumed from the "
            "XML namespaces"
        )
    return guessed


def _version_from_schemaversion(declared: str) -> str | None:
    value = declared.lower()
    if value == "1.2":
        return "1.2"
    if value == "cam 1.3" or "2nd" in value:
        return "2004-2nd"
    if "3rd" in value:
        return "2004-3rd"
    if "4th" in value:
        return "2004-4th"
    return None


def _version_from_namespaces(root: Element) -> str | None:
    namespaces: set[str] = set()
    fourth_edition = False
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        namespace, local = _split(element.tag)
        namespaces.add(namespace.lower())
        # Constructs that only exist from 4th Edition on: shared data maps, adlseq objectives (completion
        # status on global objectives) and completionThreshold as an element with attributes.
        if namespace.endswith("adlcp_v1p3") and local in ("data", "map"):
            fourth_edition = True
        if namespace.endswith("adlseq_v1p3") and local == "objectives":
            fourth_edition = True
        if local == "completionThreshold" and element.attrib:
            fourth_edition = True
        for name in element.attrib:
            attribute_namespace, attribute_local = _split(name)
            namespaces.add(attribute_namespace.lower())
            if attribute_local == "sharedDataGlobalToSystem":
                fourth_edition = True

    def used(fragment: str) -> bool:
        return any(fragment in namespace for namespace in namespaces)

    edition_2004 = "2004-4th" if fourth_edition else "2004-3rd"
    if used("adlcp_rootv1p2"):
        return "1.2"
    if used("adlcp_v1p3"):
        return edition_2004
    if used("imscp_rootv1p1p2"):
        return "1.2"
    if used("imscp_v1p1") or used("imsglobal.org/xsd/imsss") or used("adlseq_v1p3") or used("adlnav_v1p3"):
        return edition_2004
    return None


# --- resources and paths -------------------------------------------------------------------------------------------


def _compose(*parts: str) -> str:
    """xml:base composition: parts concatenated with a '/' between them; an absolute part restarts the path."""
    result = ""
    for part in parts:
        if not part:
            continue
        if part.startswith(("/", "\\")) or _URL_SCHEME.match(part):
            result = part
            continue
        if result and not result.endswith("/"):
            result += "/"
        result += part
    return result


def _package_path(url: str) -> str:
    path = url.split("#", 1)[0].split("?", 1)[0]
    decoded = unquote(path)
    if not decoded:
        raise _OutsidePackage(f"{url!r} names no file")
    if _URL_SCHEME.match(path) or decoded.startswith(("/", "\\")):
        raise _OutsidePackage(f"{url!r} is absolute; it must be a relative path inside the package")
    if "\\" in decoded or _CONTROL_CHARACTER.search(decoded):
        raise _OutsidePackage(f"{url!r} contains a backslash or a control character")
    normalised = posixpath.normpath(decoded)
    if normalised in (".", "..") or normalised.startswith("../"):
        raise _OutsidePackage(f"{url!r} points outside the package")
    return normalised


def _normalise_url(url: str) -> str:
    """``url`` with its path normalised (``a/./b/../c`` -> ``a/c``), query and fragment kept as written."""
    cut = len(url)
    for mark in ("?", "#"):
        index = url.find(mark)
        if index != -1:
            cut = min(cut, index)
    return posixpath.normpath(url[:cut]) + url[cut:]


def _scorm_type(resource: Element) -> str:
    for name, value in resource.attrib.items():
        if _local(name).lower() == "scormtype":
            kind = value.strip().lower()
            return kind if kind in ("sco", "asset") else "unknown"
    return "unknown"


def _read_resources(resources_element: Element, manifest_base: str) -> dict[str, _Resource]:
    resources_base = _compose(manifest_base, resources_element.get(_XML_BASE, ""))
    resources: dict[str, _Resource] = {}
    for element in _children(resources_element, "resource"):
        identifier = (element.get("identifier") or "").strip()
        if not identifier:
            raise ManifestError("a <resource> in imsmanifest.xml has no identifier attribute; give each one")
        if identifier in resources:
            raise ManifestError(
                f"two resources share the identifier '{identifier}'; resource identifiers must be unique"
            )
        href = (element.get("href") or "").strip() or None
        resources[identifier] = _Resource(
            identifier=identifier,
            scorm_type=_scorm_type(element),
            base=_compose(resources_base, element.get(_XML_BASE, "")),
            href=href,
            element=element,
        )
    return resources


def _launch_url(resource: _Resource, parameters: str | None, warnings: list[str]) -> str:
    assert resource.href is not None
    url = _compose(resource.base, resource.href)
    try:
        _package_path(url)
    except _OutsidePackage as exc:
        raise ManifestError(
            f"resource '{resource.identifier}' launches {url!r}, which is not a file inside the package "
            f"({exc}); launch paths must be relative paths to files in the zip"
        ) from exc
    normalised = _normalise_url(url)
    launch = join_parameters(normalised, parameters)
    if parameters and launch == normalised and parameters.lstrip("?&"):
        warnings.append(
            f"parameters {parameters!r} were ignored for resource '{resource.identifier}': its href already "
            "has a #fragment"
        )
    return launch


def _referenced_files(
    root: Element, manifest_base: str, resources: dict[str, _Resource], warnings: list[str]
) -> list[str]:
    """Every package file the manifest names: resource hrefs, <file> hrefs and adlcp:location metadata."""
    found: dict[str, None] = {}
    windows: list[str] = []

    def add(url: str | None, base: str, what: str) -> None:
        if not url or not url.strip():
            return
        composed = _compose(base, url.strip())
        try:
            found.setdefault(_package_path(composed), None)
        except _OutsidePackage as exc:
            if _WINDOWS_PATH.match(unquote(url.strip())):
                windows.append(url.strip())  # one summary line, not one per file (151 in a real package)
            else:
                warnings.append(f"{what} ignored: {exc}")

    for location in _metadata_locations(root):
        add(location, manifest_base, "metadata location")
    for resource in resources.values():
        add(resource.href, resource.base, f"href of resource '{resource.identifier}'")
        for location in _metadata_locations(resource.element):
            add(location, resource.base, f"metadata location of resource '{resource.identifier}'")
        for file_element in _children(resource.element, "file"):
            add(file_element.get("href"), resource.base, f"<file> of resource '{resource.identifier}'")
            for location in _metadata_locations(file_element):
                add(location, resource.base, f"metadata location of a file of '{resource.identifier}'")
    if windows:
        count = len(windows)
        warnings.append(f"{count} file{'' if count == 1 else 's'} named with a Windows path, e.g. '{windows[0]}' "
                        "(a path on the author's computer, not in the package); ignored")
    return list(found)


def _metadata_locations(element: Element) -> list[str]:
    metadata = _child(element, "metadata")
    if metadata is None:
        return []
    return [_clean(child.text) for child in _children(metadata, "location") if _clean(child.text)]


# --- organizations and items -------------------------------------------------------------------------------------


def _default_organization(root: Element, warnings: list[str]) -> Element | None:
    organizations_element = _child(root, "organizations")
    if organizations_element is None:
        return None
    organizations = _children(organizations_element, "organization")
    if not organizations:
        return None
    default = (organizations_element.get("default") or "").strip()
    if not default:
        return organizations[0]
    for organization in organizations:
        if organization.get("identifier") == default:
            return organization
    first = organizations[0]
    warnings.append(
        f"organizations/@default is '{default}', but no organization has that identifier; "
        f"the first organization ('{first.get('identifier')}') is used"
    )
    return first


def _sequencing_collection(root: Element) -> dict[str, Element]:
    collection = _child(root, "sequencingCollection")
    if collection is None:
        return {}
    return {seq.get("ID", ""): seq for seq in _children(collection, "sequencing") if seq.get("ID")}


def _walk_items(
    organization: Element,
    resources: dict[str, _Resource],
    version: str,
    collection: dict[str, Element],
    warnings: list[str],
) -> tuple[list[ManifestItem], list[Sco]]:
    items: list[ManifestItem] = []
    scos: list[Sco] = []
    seen: set[str] = set()
    # An explicit stack instead of recursion: nesting depth is the author's choice, not ours.
    stack: list[tuple[Element, str | None]] = [(item, None) for item in reversed(_children(organization, "item"))]
    while stack:
        element, parent = stack.pop()
        identifier = (element.get("identifier") or "").strip()
        if not identifier:
            raise ManifestError(
                f"an <item> (under '{parent or organization.get('identifier')}') has no identifier attribute; "
                "give every item a unique identifier"
            )
        if identifier in seen:
            raise ManifestError(f"two items share the identifier '{identifier}'; item identifiers must be unique")
        seen.add(identifier)
        position = len(items)
        title = _title(element) or identifier
        reference = (element.get("identifierref") or "").strip() or None
        parameters = (element.get("parameters") or "").strip() or None
        resource = None
        launch_url = None
        if reference is not None:
            resource = resources.get(reference)
            if resource is None:
                raise ManifestError(
                    f"item '{identifier}' refers to resource '{reference}', which is not in <resources>; "
                    "fix the item's identifierref or add the resource"
                )
            if resource.href is not None:
                launch_url = _launch_url(resource, parameters, warnings)
            elif resource.scorm_type == "sco":
                raise ManifestError(
                    f"item '{identifier}' launches SCO resource '{reference}', which has no href; "
                    "give the resource the path of its launch page"
                )
            else:
                warnings.append(f"item '{identifier}' refers to asset '{reference}', which has no href to launch")
        is_sco = resource is not None and resource.scorm_type == "sco" and launch_url is not None
        items.append(
            ManifestItem(
                identifier=identifier,
                title=title,
                parent_identifier=parent,
                position=position,
                resource_identifier=reference,
                is_sco=is_sco,
                launch_url=launch_url,
            )
        )
        if is_sco and resource is not None and launch_url is not None:
            scos.append(
                Sco(
                    identifier=identifier,
                    title=title,
                    launch_url=launch_url,
                    parameters=parameters,
                    mastery_score=_mastery_score(element, identifier, warnings) if version == "1.2" else None,
                    passing_score_scaled=(
                        None if version == "1.2"
                        else _passing_score_scaled(element, identifier, collection, warnings)
                    ),
                    position=position,
                    parent_identifier=parent,
                    resource_identifier=resource.identifier,
                )
            )
        stack.extend((child, identifier) for child in reversed(_children(element, "item")))
    return items, scos


def _scos_without_organization(resources: dict[str, _Resource]) -> list[Sco]:
    scos: list[Sco] = []
    for resource in resources.values():
        if resource.scorm_type != "sco":
            continue
        if resource.href is None:
            raise ManifestError(
                f"SCO resource '{resource.identifier}' has no href; give the resource the path of its launch page"
            )
        scos.append(
            Sco(
                identifier=resource.identifier,
                title=resource.identifier,
                launch_url=_launch_url(resource, None, []),
                parameters=None,
                mastery_score=None,
                passing_score_scaled=None,
                position=len(scos),
                parent_identifier=None,
                resource_identifier=resource.identifier,
            )
        )
    return scos


def _mastery_score(item: Element, identifier: str, warnings: list[str]) -> float | None:
    element = _child_ci(item, "masteryscore")
    if element is None or not _clean(element.text):
        return None
    text = _clean(element.text)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:
        warnings.append(f"item '{identifier}' has adlcp:masteryscore {text!r}, not a number from 0 to 100; ignored")
        return None
    return value


def _passing_score_scaled(
    item: Element, identifier: str, collection: dict[str, Element], warnings: list[str]
) -> float | None:
    """minNormalizedMeasure of the primary objective when it is satisfied by measure (SCORM 2004)."""
    sequencing = _child(item, "sequencing")
    if sequencing is None:
        return None
    candidates = [sequencing]
    referenced = collection.get(sequencing.get("IDRef", ""))
    if referenced is not None:
        candidates.append(referenced)  # the item's own elements win over the shared collection entry
    for candidate in candidates:
        objectives = next(
            (o for o in _children(candidate, "objectives") if "adlseq" not in _split(o.tag)[0]), None
        )
        if objectives is None:
            continue
        primary = _child(objectives, "primaryObjective")
        if primary is None or (primary.get("satisfiedByMeasure") or "").strip().lower() not in ("true", "1"):
            return None
        measure = _child(primary, "minNormalizedMeasure")
        text = _clean(measure.text) if measure is not None else ""
        if not text:
            return 1.0  # the SCORM 2004 default for minNormalizedMeasure
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not -1 <= value <= 1:
            warnings.append(
                f"item '{identifier}' has minNormalizedMeasure {text!r}, not a number from -1 to 1; ignored"
            )
            return None
        return value
    return None
