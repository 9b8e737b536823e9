// One test at a time: each class runs a service with its own detectors, and the browser test a real browser.
[assembly: DoNotParallelize]
