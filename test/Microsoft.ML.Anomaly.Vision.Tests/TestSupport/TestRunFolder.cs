namespace Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

/// <summary>One temporary folder per test run, holding every folder the tests create; deleted when the run ends.</summary>
[TestClass]
public static class TestRunFolder
{
    /// <summary>The folder, under the temp directory.</summary>
    public static string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "anomaly-vision-tests", Guid.NewGuid().ToString("N"));

    /// <summary>Deletes the run's folder.</summary>
    [AssemblyCleanup]
    public static void Delete()
    {
        if (Directory.Exists(Path))
            Directory.Delete(Path, recursive: true);
    }
}
