using System.CommandLine;
using System.Diagnostics;
using Anomaly.Vision.Training;

/// <summary>
/// Times CFA training on random features of ResNet-18 shapes (layer1–layer3 of a square input), side by side:
/// the C# CPU kernels (fused nearest-entry kernel, descriptor and its gradient in C#: what Fit does on a CPU) against
/// LibTorch's convolutions, top-k and autograd in chunks of <see cref="CfaTrainer.CpuChunkBytes"/> of distances. Both
/// must reach the same losses up to rounding, which Adam's first, sign-like steps amplify: the loss of LibTorch's path with
/// whole batches instead of chunks (only the order of additions differs) shows that spread. Last line:
/// <c>cfa_fused_vs_libtorch=</c> (time ratio).
/// Arguments: [image size=128] [images=60] [epochs=3] [batch=32].
/// </summary>
internal static class CfaBenchmark
{
    public static Command Command()
    {
        var size = new Argument<int>("image-size") { Description = "Input size in pixels.", DefaultValueFactory = _ => 128 };
        var images = new Argument<int>("images") { Description = "Training images.", DefaultValueFactory = _ => 60 };
        var epochs = new Argument<int>("epochs") { Description = "Training epochs.", DefaultValueFactory = _ => 3 };
        var batch = new Argument<int>("batch") { Description = "Batch size.", DefaultValueFactory = _ => 32 };
        var command = new Command("cfa", "CFA training: fused CPU kernels against LibTorch.") { size, images, epochs, batch };
        command.SetAction(r => Run(r.GetValue(size), r.GetValue(images), r.GetValue(epochs), r.GetValue(batch)));
        return command;
    }

    private static int Run(int size, int images, int epochs, int batch)
    {
        LayerShape[] layers = { new(64, size / 4, size / 4), new(128, size / 8, size / 8), new(256, size / 16, size / 16) };
        var source = new InMemoryFeatureSource(layers);
        var random = new Random(0);
        for (int i = 0; i < images; i++)
            source.Add(layers.Select(s => Enumerable.Range(0, s.Size).Select(_ => (float)random.NextDouble()).ToArray()).ToArray());
        var options = new CfaTrainingOptions { Epochs = epochs, BatchSize = batch, Device = ComputeDevice.Cpu };

        Console.WriteLine($"CFA training: {images} images at {size}×{size} (layers {string.Join(", ", layers.Select(l => $"{l.Channels}×{l.Height}×{l.Width}"))}), " +
                          $"batch {batch}, {epochs} epochs, {Environment.ProcessorCount} cores, TorchSharp threads {TorchSharp.torch.get_num_threads()}");
        var (fused, fusedLoss) = Time("fused", source, options, cpuKernels: true, chunkBytes: null);
        var (libTorch, libTorchLoss) = Time("libtorch", source, options, cpuKernels: false, chunkBytes: null);
        // The spread that the order of additions alone gives: LibTorch's path with whole batches instead of chunks.
        var (_, wholeBatchLoss) = Time("libtorch, whole batches", source, options, cpuKernels: false, chunkBytes: 1L << 50);
        Console.WriteLine($"final epoch loss: fused {fusedLoss:G6}, libtorch {libTorchLoss:G6}, libtorch with whole batches {wholeBatchLoss:G6}");
        Console.WriteLine($"cfa_fused_vs_libtorch={fused / libTorch:F3}");
        return 0;
    }

    private static (double Seconds, double LastLoss) Time(string name, IFeatureSource source, CfaTrainingOptions options, bool cpuKernels, long? chunkBytes)
    {
        double lastLoss = double.NaN;
        var progress = new SyncProgress(p => lastLoss = p.Stage == "training" ? p.Loss : lastLoss);
        var clock = Stopwatch.StartNew();
        CfaTrainer.Train(source, options, progress, default, chunkBytes, cpuKernels);
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"{name,-24} {seconds,8:F2} s");
        return (seconds, lastLoss);
    }

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
