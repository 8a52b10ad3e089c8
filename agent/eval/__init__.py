"""`agent eval`: benchmark suites (discovery, jobs, executors, progress), graders, benchmark importers and
reports. The core (`agent.Agent`, the loop, models, tools) never imports this package."""
