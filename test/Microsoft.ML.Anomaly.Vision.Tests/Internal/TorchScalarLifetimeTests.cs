using System.Reflection;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Anomaly.Vision.Tests.Internal;

/// <summary>
/// No compiled code of the libraries, samples or benchmarks hands LibTorch a TorchSharp Scalar that nothing keeps alive
/// during the call (see <see cref="TorchScalarAudit"/>); such a Scalar can be freed by a garbage collection on another
/// thread while LibTorch reads it.
/// </summary>
[TestClass]
public sealed class TorchScalarLifetimeTests
{
    private static string OutputFolder => AppContext.BaseDirectory;

    [TestMethod]
    public void NoLibrarySampleOrBenchmarkCodeHandsLibTorchAScalarItDoesNotHold()
    {
        var assemblies = new[] { "Anomaly.Vision.Training.dll", "Microsoft.ML.Anomaly.Vision.dll" }.Select(a => Path.Combine(OutputFolder, a))
            .Concat(typeof(TorchScalarLifetimeTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .Where(a => a.Key == "TorchScalarAudit").Select(a => a.Value!))
            .ToArray();
        Assert.HasCount(6, assemblies);
        using var audit = new TorchScalarAudit(Path.Combine(OutputFolder, "TorchSharp.dll"));
        var findings = assemblies.SelectMany(a => audit.Findings(a)).ToArray();
        Assert.IsEmpty(findings, "Hold each Scalar through its call (ScalarMath, or using var s = x.ToScalar()):\n" + string.Join('\n', findings));
    }

    [TestMethod]
    public void TheAuditFindsEachWayOfMakingAScalarForOneCallAndNotAHeldOne()
    {
        using var audit = new TorchScalarAudit(Path.Combine(OutputFolder, "TorchSharp.dll"));
        var findings = audit.Findings(typeof(TorchScalarLifetimeTests).Assembly.Location, t => t.Name == nameof(ScalarExamples));

        string[] methods = findings.Select(f => f.Split(": in ScalarExamples.")[1].Split(':')[0]).Order().ToArray();
        CollectionAssert.AreEqual(new[] { "DefaultAlpha", "ImplicitConversion", "OperatorWithANumber", "ScalarPassedOn" }, methods,
            string.Join('\n', findings));
        foreach (string finding in findings)
            StringAssert.Matches(finding, new System.Text.RegularExpressions.Regex(@"TorchScalarLifetimeTests\.cs:\d+: in ScalarExamples\."));
        StringAssert.Contains(findings.Single(f => f.Contains(".DefaultAlpha:", StringComparison.Ordinal)), "Tensor.add(Tensor) makes a Scalar");
    }

    /// <summary>Code for the audit to read (never run): each way of handing LibTorch a Scalar made for the call, and a held one.</summary>
    private static class ScalarExamples
    {
        public static Tensor ImplicitConversion(Tensor t) => t.mul(0.5f);

        public static Tensor OperatorWithANumber(Tensor t) => t - 0.5f;

        public static Tensor DefaultAlpha(Tensor a, Tensor b) => a + b;

        public static Tensor ScalarPassedOn(Tensor t) => t.mul(0.5.ToScalar());

        public static Tensor Held(Tensor t)
        {
            using var half = 0.5.ToScalar();
            return t.mul(half);
        }
    }
}
