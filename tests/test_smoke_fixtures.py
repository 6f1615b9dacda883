from tests.conftest import basic


def test_upload_then_list(registry, wheel):
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    group = registry.group("team")
    project = registry.project(group, "lib")
    filename, content = wheel
    response = registry.upload(project, filename, content, token=token)
    assert response.status_code == 201, response.text
    page = registry.client.get(
        f"/api/v4/projects/{project.id}/packages/pypi/simple/demo-pkg/", headers=basic(token)
    )
    assert page.status_code == 200
    assert filename in page.text
