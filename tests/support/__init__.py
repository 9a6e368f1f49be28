"""What several test modules share: paths, the local Ray fixture, driver-kill helpers, small reward models."""
