using System.Diagnostics;
using System.Reflection;

namespace Microsoft.ML.Anomaly.Vision.Tests.Detectors;

/// <summary>
/// Fitting and scoring survive garbage collections on another thread: a native handle (a TorchSharp scalar or tensor)
/// whose owner is collected while LibTorch uses it aborts the process or changes a result. The detectors run in a
/// separate process (test/GcStressCheck) whose background thread collects garbage and runs finalizers without pause,
/// so that an abort fails this test rather than killing the test host.
/// </summary>
[TestClass]
public sealed class GarbageCollectionStressTests
{
    /// <summary>How long the check repeats the training-level fits; the code before scalars were held aborted within 21 s in each of 6 runs.</summary>
    private const int Seconds = 30;

    [TestMethod]
    public void EveryDetectorFitsAndScoresTheSameWhileAnotherThreadCollectsGarbage()
    {
        string check = typeof(GarbageCollectionStressTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "GcStressCheck").Value!;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { check, Seconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     DetectorFixture.DataRoot, DetectorFixture.Category, DetectorFixture.BackbonePath })
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("The check did not finish within 5 minutes.");
        }
        // LibTorch warns about NNPACK once per convolution on CPUs it does not support; the rest is the failure.
        string failure = string.Join('\n', errors.Result.Split('\n').Where(l => !l.Contains("NNPACK", StringComparison.Ordinal)).Take(40));
        Assert.AreEqual(0, process.ExitCode, $"exit code {process.ExitCode}\n{output.Result}\n{failure}");

        string[] lines = output.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (string detector in new[] { "cfa", "cflow", "dfm" })
            CollectionAssert.Contains(lines, $"{detector} (ML.NET): 8 images scored, all finite: True");
        foreach (string workload in new[] { "cfa-csharp", "cfa-libtorch", "cflow-csharp", "cflow-libtorch", "dfm-fre", "dfm-nll" })
            Assert.IsTrue(lines.Any(l => l.StartsWith(workload + ": ", StringComparison.Ordinal) && l.EndsWith("all equal to the first round's", StringComparison.Ordinal)),
                $"no result for {workload}:\n{output.Result}");
        Assert.AreEqual("completed", lines[^1]);
    }
}
