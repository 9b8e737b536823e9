using System.Runtime.InteropServices;
using TorchSharp;

namespace Anomaly.Vision.Training;

/// <summary>
/// Loads the TorchSharp native runtime once and turns a failure into an exception that says what is
/// missing and how to fix it, instead of a bare <see cref="DllNotFoundException"/> or
/// <see cref="TypeInitializationException"/> at some later call.
/// </summary>
public static class TorchRuntime
{
    private static readonly Lazy<Exception?> LoadFailure = new(TryLoad, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Makes sure the native TorchSharp runtime is loaded; call before the first use of <c>torch</c>.</summary>
    /// <exception cref="TorchRuntimeException">The native runtime cannot be loaded.</exception>
    public static void EnsureAvailable()
    {
        if (LoadFailure.Value is { } failure)
            throw new TorchRuntimeException(Describe(failure, AppContext.BaseDirectory), failure);
    }

    /// <summary>True when TorchSharp can use a CUDA device (a CUDA build of TorchSharp on a machine with an NVIDIA GPU).</summary>
    /// <exception cref="TorchRuntimeException">The native runtime cannot be loaded.</exception>
    public static bool IsCudaAvailable()
    {
        EnsureAvailable();
        return torch.cuda.is_available();
    }

    /// <summary>Resolves a requested device to a TorchSharp device.</summary>
    /// <param name="requested">The device the user asked for.</param>
    /// <param name="cudaDeviceIndex">Which CUDA device, when CUDA is used (0 is the first).</param>
    /// <exception cref="ArgumentException"><paramref name="requested"/> is <see cref="ComputeDevice.Cuda"/> and no CUDA device can be used.</exception>
    public static torch.Device SelectDevice(ComputeDevice requested, int cudaDeviceIndex = 0)
    {
        EnsureAvailable();
        ArgumentOutOfRangeException.ThrowIfNegative(cudaDeviceIndex);
        var cuda = new torch.Device(DeviceType.CUDA, cudaDeviceIndex);
        return requested switch
        {
            ComputeDevice.Cpu => torch.CPU,
            ComputeDevice.Auto => torch.cuda.is_available() ? cuda : torch.CPU,
            ComputeDevice.Cuda => torch.cuda.is_available()
                ? cuda
                : throw new ArgumentException(
                    "CUDA was requested but no CUDA device is usable: build with -p:AnomalyVisionGpu=true " +
                    "(which references TorchSharp-cuda-linux) on a machine with an NVIDIA driver, or choose ComputeDevice.Cpu.",
                    nameof(requested)),
            _ => throw new ArgumentException($"Unknown device {requested}.", nameof(requested)),
        };
    }

    private static Exception? TryLoad()
    {
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
            using var probe = torch.zeros(1);
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>
    /// Says why the runtime did not load. TorchSharp reports any failure to load its native library as a missing
    /// libtorch package, whatever the loader said, so when its native library is present the loader is asked again
    /// directly and its own message (for example a missing GLIBCXX version) decides the diagnosis.
    /// </summary>
    internal static string Describe(Exception failure, string baseDir)
    {
        string details = Flatten(failure);
        string? native = new[]
        {
            Path.Combine(baseDir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"),
            Path.Combine(baseDir, "libLibTorchSharp.so"),
        }.FirstOrDefault(File.Exists);
        bool nativePresent = native is not null || !OperatingSystem.IsLinux();
        bool hasLibTorch = Directory.EnumerateFiles(baseDir, "libtorch_cpu.*", SearchOption.AllDirectories).Any()
            || Directory.EnumerateFiles(baseDir, "torch_cpu.dll", SearchOption.AllDirectories).Any();
        string? loaderMessage = native is null ? null : ProbeLoad(native);
        if (loaderMessage is not null)
            details += " --> loading " + native + " directly: " + loaderMessage;

        if (details.Contains("GLIBCXX", StringComparison.Ordinal))
        {
            return "TorchSharp's native library needs a newer libstdc++ (GLIBCXX_3.4.32) than this system has " +
                   "(Debian 12 and Ubuntu 22.04 lack it). The Anomaly.Vision packages mark that never-used version requirement " +
                   "weak when an executable is built or published (buildTransitive/TorchSharpGlibcxx.targets); this copy was not " +
                   "marked: run the application from its own dotnet build or dotnet publish output, do not exclude the packages' " +
                   "build assets (ExcludeAssets/PrivateAssets buildTransitive), or install libstdc++ from GCC 13 or newer. " +
                   "Loader message: " + details;
        }
        if (!hasLibTorch || !nativePresent)
        {
            return "The TorchSharp native runtime was not found next to the application. The Anomaly.Vision packages bring " +
                   "TorchSharp-cpu; a project that excludes it needs a package reference to TorchSharp-cpu (or TorchSharp-cuda-linux " +
                   "for GPUs) in the executable project. Loader message: " + details;
        }
        return $"The TorchSharp native runtime could not be loaded on {RuntimeInformation.OSDescription} " +
               $"({RuntimeInformation.ProcessArchitecture}). Loader message: " + details;
    }

    private static string? ProbeLoad(string path)
    {
        try
        {
            NativeLibrary.Load(path);
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            return e.Message;
        }
    }

    private static string Flatten(Exception e)
    {
        var parts = new List<string>();
        for (Exception? x = e; x != null; x = x.InnerException)
            parts.Add($"{x.GetType().Name}: {x.Message}");
        return string.Join(" --> ", parts);
    }
}

/// <summary>The TorchSharp native runtime cannot be loaded; the message says why and how to fix it.</summary>
public sealed class TorchRuntimeException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong and how to fix it.</param>
    /// <param name="inner">The loader's own exception.</param>
    public TorchRuntimeException(string message, Exception inner) : base(message, inner) { }
}
