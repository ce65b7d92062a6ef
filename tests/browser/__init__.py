"""End-to-end tests in headless Chromium: JupyterLab + nbfeed widgets, Workspace in a page."""
