"""Persistence: every table Packyard keeps."""

from app.models.accounts import DeployToken, JobToken, PersonalAccessToken, User
from app.models.audit import AuditEvent
from app.models.base import Base
from app.models.cache import CacheGeneration
from app.models.hooks import WebHook, WebHookDelivery, WebHookEvent
from app.models.instance import InstanceSecret
from app.models.namespaces import Group, Membership, Project
from app.models.oidc import ExternalIdentity, PublisherToken, TrustedPublisher, UsedOidcToken
from app.models.packages import Package, PackageFile, ReservedName
from app.models.protection import PackageProtectionRule
from app.models.sign_in import SignInAttempt
from app.models.storage import StorageDeletion
from app.models.upstream import UpstreamFile, UpstreamProject

__all__ = [
    "AuditEvent",
    "Base",
    "CacheGeneration",
    "DeployToken",
    "ExternalIdentity",
    "Group",
    "InstanceSecret",
    "JobToken",
    "Membership",
    "Package",
    "PackageFile",
    "PackageProtectionRule",
    "PersonalAccessToken",
    "Project",
    "PublisherToken",
    "ReservedName",
    "SignInAttempt",
    "StorageDeletion",
    "TrustedPublisher",
    "UpstreamFile",
    "UpstreamProject",
    "UsedOidcToken",
    "User",
    "WebHook",
    "WebHookDelivery",
    "WebHookEvent",
]
