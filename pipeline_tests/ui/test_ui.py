"""The Dagster UI in a real browser: lineage, a materialization launched by clicking, its metadata.

Headless Chromium looks at a `dagster dev` on the local stack the way a user would. What the test
must know for certain (run status, metadata values) it also reads through the same webserver's
GraphQL, so a failure says whether the UI or the load went wrong.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline_tests.ui.browser import graphql, wait_for

pytestmark = pytest.mark.stack

BUCKET = "bob-embulk-demo"  # pipelines/book_order.yml's default; keys must match ^(original|encryption)-data/
REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "pipeline"}
ROWS = (
    "order_id,user_id,book_id,book_name,order_cnt,order_amt\n"
    "ui-1,11,101,The Tale of Genji,1,1200\n"
    "ui-2,12,102,Kokoro,2,1800\n"
    "ui-3,13,103,Snow Country,1,900\n"
)
COLUMNS = ("order_id", "user_id", "book_id", "book_name", "order_cnt", "order_amt")


def open_page(browser: Any, port: int, path: str) -> None:
    """Open ``path``; dismiss the community dialog Dagster shows on a first visit (it opens a moment later)."""
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{port}{path}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[aria-label='Dagster']"), "the Dagster UI to render")
    try:
        wait_for(lambda: browser.find_element(By.XPATH, "//button[normalize-space(.)='Skip']"),
                 "the community dialog", timeout=4).click()
    except AssertionError:
        return  # not shown: dismissed earlier in this browser
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, ".bp5-overlay-backdrop"), "the dialog to close")


def page_text(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def asset_keys(port: int) -> set[str]:
    data = graphql(port, "{ assetNodes { assetKey { path } } }")
    return {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}


def test_the_lineage_page_shows_the_sources_feeding_each_table(dagster_ui, browser, screenshots: Path):
    from selenium.webdriver.common.by import By

    keys = asset_keys(dagster_ui)
    feeds = {"book_order_objects": "book_order"}
    if {"sensor_data_stream", "sensor_data"} <= keys:
        feeds["sensor_data_stream"] = "sensor_data"

    open_page(browser, dagster_ui, "/asset-groups")
    # With more than one group the lineage starts collapsed to one box per group: open them all.
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[aria-label='unfold_more']"), "the group boxes")
    for unfold in browser.find_elements(By.CSS_SELECTOR, "[aria-label='unfold_more']"):
        unfold.click()

    def shown(name: str) -> bool:
        nodes = browser.find_elements(By.XPATH, f"//*[normalize-space(text())='{name}']")
        return any(node.is_displayed() for node in nodes)

    for source, table in feeds.items():
        wait_for(lambda source=source, table=table: shown(source) and shown(table),
                 f"{source} and {table} on the graph")
    browser.save_screenshot(str(screenshots / "ui-lineage.png"))
    for source, table in feeds.items():
        data = graphql(dagster_ui, "query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) "
                                   "{ ... on AssetNode { dependencyKeys { path } } } }", {"path": [table]})
        assert {"path": [source]} in data["assetNodeOrError"]["dependencyKeys"], f"{source} does not feed {table}"


@pytest.fixture(scope="module")
def new_object(dagster_ui, s3) -> str:
    """A new CSV object under the book_order prefix, with its dynamic partition added."""
    key = f"original-data/ui-test-{uuid.uuid4().hex[:8]}.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=ROWS.encode())
    data = graphql(dagster_ui, "mutation($repository: RepositorySelector!, $key: String!) { addDynamicPartition("
                               "repositorySelector: $repository, partitionsDefName: \"book_order_objects\", "
                               "partitionKey: $key) { __typename ... on PythonError { message } } }",
                   {"repository": REPOSITORY, "key": key})
    assert data["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", data
    return key


@pytest.fixture(scope="module")
def launched_run(dagster_ui, browser, new_object: str, screenshots: Path) -> str:
    """Materialize the new object's partition by clicking through the asset page; the run's id."""
    from selenium.webdriver.common.by import By

    open_page(browser, dagster_ui, "/assets/book_order")
    materialize = wait_for(lambda: next(button for button in browser.find_elements(By.TAG_NAME, "button")
                                        if button.text.strip().startswith("Materialize")), "the Materialize button")
    materialize.click()
    dialog = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "[role='dialog']"), "the launch dialog")
    dialog.find_element(By.XPATH, ".//*[contains(text(), 'Select a partition')]").click()
    wait_for(lambda: browser.switch_to.active_element.get_attribute("placeholder") == "Filter partitions",
             "the partition filter")
    browser.switch_to.active_element.send_keys(new_object)
    wait_for(lambda: browser.find_element(By.XPATH, f"//span[normalize-space(text())='{new_object}']"),
             "the new partition in the picker").click()
    dialog.find_element(By.XPATH, ".//*[contains(text(), 'Launch runs to materialize')]").click()  # close the picker
    browser.save_screenshot(str(screenshots / "ui-launch-dialog.png"))
    launch = wait_for(lambda: next(button for button in dialog.find_elements(By.TAG_NAME, "button")
                                   if button.text == "Launch 1 run"), "the Launch 1 run button")
    launch.click()
    wait_for(lambda: "Launched run" in page_text(browser), "the Launched run toast")

    def run_for_partition() -> str | None:
        data = graphql(dagster_ui, "query($key: String!) { runsOrError(filter: {tags: [{key: \"dagster/partition\", "
                                   "value: $key}]}) { ... on Runs { results { runId } } } }", {"key": new_object})
        results = data["runsOrError"]["results"]
        return results[0]["runId"] if results else None

    return wait_for(run_for_partition, f"a run for partition {new_object}")


def test_a_materialization_launched_from_the_ui_succeeds(dagster_ui, browser, launched_run: str, screenshots: Path,
                                                          hologres, new_object: str):
    def finished_status() -> str | None:
        data = graphql(dagster_ui, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                       {"id": launched_run})
        status = data["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    status = wait_for(finished_status, f"run {launched_run} to finish", timeout=240, interval=2)
    open_page(browser, dagster_ui, f"/runs/{launched_run}")
    wait_for(lambda: "book_order" in page_text(browser), "the run page")
    browser.save_screenshot(str(screenshots / "ui-run.png"))
    assert status == "SUCCESS", f"run {launched_run} ended {status}; see test-artifacts/ui/ui-run.png"
    rows = hologres.execute("SELECT order_id FROM public.book_order WHERE order_id LIKE 'ui-%' ORDER BY 1").fetchall()
    assert [row[0] for row in rows] == ["ui-1", "ui-2", "ui-3"]


def test_the_asset_page_shows_the_row_count_and_column_schema(dagster_ui, browser, launched_run: str,
                                                              new_object: str, screenshots: Path):
    data = graphql(dagster_ui, "query($key: String!) { assetNodeOrError(assetKey: {path: [\"book_order\"]}) "
                               "{ ... on AssetNode { assetMaterializations(partitions: [$key]) { runId "
                               "metadataEntries { label ... on IntMetadataEntry { intValue } "
                               "... on TableSchemaMetadataEntry { schema { columns { name type } } } } } } } }",
                   {"key": new_object})
    materializations = data["assetNodeOrError"]["assetMaterializations"]
    assert [m["runId"] for m in materializations] == [launched_run]
    entries = {entry["label"]: entry for entry in materializations[0]["metadataEntries"]}
    assert entries["dagster/row_count"]["intValue"] == 3
    assert [column["name"] for column in entries["dagster/column_schema"]["schema"]["columns"]] == list(COLUMNS)

    open_page(browser, dagster_ui, "/assets/book_order?partition=" + new_object)
    wait_for(lambda: "Row count" in page_text(browser) and all(name in page_text(browser) for name in COLUMNS),
             "the row count and every column on the asset page")
    browser.save_screenshot(str(screenshots / "ui-asset.png"))


def test_the_component_that_defines_the_pipeline_reaches_the_ui(dagster_ui, browser, screenshots: Path):
    """book_order comes from pipeline/defs/pipelines/defs.yaml (EmbulkLoadCollection): its translation's owner
    and tag are on the asset page, and the asset links to the config file it was built from."""
    data = graphql(dagster_ui, "{ assetNodeOrError(assetKey: {path: [\"book_order\"]}) { ... on AssetNode { "
                               "owners { ... on TeamAssetOwner { team } } tags { key value } "
                               "metadataEntries { label ... on CodeReferencesMetadataEntry { codeReferences { "
                               "... on LocalFileCodeReference { filePath lineNumber } } } } } } }")
    node = data["assetNodeOrError"]
    assert node["owners"] == [{"team": "data-platform"}]
    assert {"key": "product", "value": "pipeline"} in node["tags"]
    (references,) = [e for e in node["metadataEntries"] if e["label"] == "dagster/code_references"]
    files = sorted(r["filePath"] for r in references["codeReferences"])
    assert [f.endswith(("pipelines/book_order.yml", "pipeline/defs/pipelines/defs.yaml")) for f in files] == [True] * 2
    assert {f.rsplit("/", 1)[1] for f in files} == {"book_order.yml", "defs.yaml"}  # the config, and its component

    open_page(browser, dagster_ui, "/assets/book_order")
    wait_for(lambda: all(text in " ".join(page_text(browser).split()) for text in (
        "data-platform", "product: pipeline", "Open config book_order.yml in editor", "Open defs.yaml in editor")),
        "the component's owner, tag and source files on the asset page")
    browser.save_screenshot(str(screenshots / "ui-component.png"))
