using Anomaly.Vision.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training.Tests;

[TestClass]
public sealed class TorchRuntimeTests
{
    [TestMethod]
    public void ConvolutionForwardAndBackwardRunInTestProcess()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        // A 1x1 input, one 1x1 kernel: y = w * x + b, so dy/dw = x and dy/db = 1.
        var conv = nn.Conv2d(1, 1, 1);
        using (no_grad())
        {
            conv.weight!.fill_(3f);
            conv.bias!.fill_(0.5f);
        }
        var x = full(new long[] { 1, 1, 1, 1 }, 2f);
        var y = conv.forward(x);
        Assert.AreEqual(6.5f, y.item<float>(), 1e-6f);
        y.sum().backward();
        Assert.AreEqual(2f, conv.weight!.grad!.item<float>(), 1e-6f);
        Assert.AreEqual(1f, conv.bias!.grad!.item<float>(), 1e-6f);
    }

    [TestMethod]
    public void NativeLibraryInOutputIsPatched()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!OperatingSystem.IsLinux())
            Assert.Inconclusive("The GLIBCXX patch applies to Linux builds only.");
        Assert.IsTrue(File.Exists(path), path);
        byte[] original = File.ReadAllBytes(Path.Combine(NuGetPackageRoot(), "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so"));
        byte[] patched = File.ReadAllBytes(path);
        Assert.HasCount(original.Length, patched);
        int differing = Enumerable.Range(0, original.Length).Count(i => original[i] != patched[i]);
        Assert.AreEqual(1, differing, "exactly one byte (the version flag) differs from the package's copy");
    }

    [TestMethod]
    public void UnpatchedNativeLibraryIsDiagnosedFromTheLoadersMessage()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Inconclusive("The GLIBCXX requirement concerns the Linux build only.");
        string[] libstdcxx = ["/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6"];
        string? system = libstdcxx.FirstOrDefault(File.Exists);
        if (system is null || File.ReadAllText(system, System.Text.Encoding.Latin1).Contains("GLIBCXX_3.4.32", StringComparison.Ordinal))
            Assert.Inconclusive("This system's libstdc++ has GLIBCXX_3.4.32, so the package's unpatched library loads.");

        // The loaded runtime provides libtorch, so the unpatched copy fails on the version requirement alone.
        TorchRuntime.EnsureAvailable();
        string app = Path.Combine(Path.GetTempPath(), "av-glibcxx-" + Guid.NewGuid().ToString("N"));
        string native = Path.Combine(app, "runtimes", "linux-x64", "native");
        Directory.CreateDirectory(native);
        try
        {
            File.Copy(Path.Combine(NuGetPackageRoot(), "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so"),
                Path.Combine(native, "libLibTorchSharp.so"));
            File.WriteAllBytes(Path.Combine(native, "libtorch_cpu.so"), []);
            // What TorchSharp 0.107 throws whatever the loader said: it blames a missing package.
            var failure = new NotSupportedException(
                "The libtorch-cpu-linux-x64 package version 2.10.0 is not restored on this system. If using F# Interactive or .NET Interactive " +
                "you may need to add a reference to this package. This application doesn't contain a reference to libtorch-cpu-linux-x64.");

            string message = TorchRuntime.Describe(failure, app);

            StringAssert.StartsWith(message, "TorchSharp's native library needs a newer libstdc++ (GLIBCXX_3.4.32)");
            StringAssert.Contains(message, "GLIBCXX_3.4.32' not found");
            StringAssert.Contains(message, "doesn't contain a reference to libtorch-cpu-linux-x64");
        }
        finally
        {
            Directory.Delete(app, recursive: true);
        }
    }

    [TestMethod]
    public void CpuDeviceIsSelectedWithoutCuda()
    {
        Assert.AreEqual(DeviceType.CPU, TorchRuntime.SelectDevice(ComputeDevice.Cpu).type);
        if (!cuda.is_available())
        {
            Assert.AreEqual(DeviceType.CPU, TorchRuntime.SelectDevice(ComputeDevice.Auto).type);
            var e = Assert.ThrowsExactly<ArgumentException>(() => TorchRuntime.SelectDevice(ComputeDevice.Cuda));
            Assert.AreEqual("requested", e.ParamName);
        }
    }

    private static string NuGetPackageRoot() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
}
