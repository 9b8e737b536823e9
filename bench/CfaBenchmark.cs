using System.Diagnostics;
using Anomaly.Vision.Training;

/// <summary>
/// Times CFA training on random features of ResNet-18 shapes for a 128×128 input
/// (layer1 64×32×32, layer2 128×16×16, layer3 256×8×8): the memory-bank pass and each epoch.
/// Arguments: [images=60] [epochs=3] [batch=32].
/// </summary>
internal static class CfaBenchmark
{
    public static int Run(string[] args)
    {
        int images = args.Length > 0 ? int.Parse(args[0]) : 60;
        int epochs = args.Length > 1 ? int.Parse(args[1]) : 3;
        int batch = args.Length > 2 ? int.Parse(args[2]) : 32;
        LayerShape[] layers = { new(64, 32, 32), new(128, 16, 16), new(256, 8, 8) };
        var source = new InMemoryFeatureSource(layers);
        var random = new Random(0);
        for (int i = 0; i < images; i++)
            source.Add(layers.Select(s => Enumerable.Range(0, s.Size).Select(_ => (float)random.NextDouble()).ToArray()).ToArray());

        var options = new CfaTrainingOptions { Epochs = epochs, BatchSize = batch, Device = ComputeDevice.Cpu };
        var clock = Stopwatch.StartNew();
        var process = Process.GetCurrentProcess();
        TimeSpan last = TimeSpan.Zero, lastCpu = process.TotalProcessorTime;
        var progress = new SyncProgress(p =>
        {
            if (p.Stage == "memory bank" && p.Step < p.Steps)
                return;
            var now = clock.Elapsed;
            process.Refresh();
            var cpu = process.TotalProcessorTime;
            Console.WriteLine($"{p.Stage,-12} {p.Step}/{p.Steps}  loss {p.Loss,10:G5}  wall {(now - last).TotalSeconds,7:F2} s  cpu {(cpu - lastCpu).TotalSeconds,7:F2} s");
            last = now;
            lastCpu = cpu;
        });
        var model = CfaTrainer.Train(source, options, progress);
        Console.WriteLine($"CFA: {images} images, layers {string.Join(", ", layers)}, descriptor {model.InputChannels}→{model.DescriptorChannels}, " +
                          $"bank {model.BankSize}, {epochs} epochs: {clock.Elapsed.TotalSeconds:F2} s in all, {Environment.ProcessorCount} cores, " +
                          $"TorchSharp threads {TorchSharp.torch.get_num_threads()}");
        return 0;
    }

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
