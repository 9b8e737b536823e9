using System.CommandLine;
using System.Diagnostics;
using Anomaly.Vision.Training;

/// <summary>
/// CFlow decoder speed on ResNet-18 feature shapes: inference images/s of <see cref="CflowModel.LogLikelihoods"/>
/// at 256×256 input, and training seconds per epoch (from the start of Fit to the last epoch's report) on 60 images
/// at 128×128 or 256×256 input, default options,
/// through LibTorch (autograd and torch.optim.Adam, the earlier path) and with <see cref="CflowCpuStep"/>.
/// Last line: <c>cflow_epoch_cpu_step_vs_libtorch=</c> (time ratio).
/// Usage: <c>cflow [cpu|cuda] [inference-batch (0: skip)] [training epochs (0: skip)] [torch threads] [training input size 128|256]</c>.
/// </summary>
internal static class CflowBenchmark
{
    public static Command Command()
    {
        var device = new Argument<string>("device") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong(StringComparer.OrdinalIgnoreCase, "cpu", "cuda");
        var batch = new Argument<int>("inference-batch") { Description = "Inference batch (0: skip inference).", DefaultValueFactory = _ => 8 };
        var epochs = new Argument<int>("training-epochs") { Description = "Training epochs (0: skip training).", DefaultValueFactory = _ => 3 };
        var threads = new Argument<int?>("torch-threads") { Description = "TorchSharp threads. Default: TorchSharp's." };
        var trainingSize = new Argument<int>("training-size") { Description = "Training input size, 128 or 256.", DefaultValueFactory = _ => 128 };
        var command = new Command("cflow", "CFlow decoder inference and training speed.") { device, batch, epochs, threads, trainingSize };
        command.SetAction(r => Run(string.Equals(r.GetValue(device), "cuda", StringComparison.OrdinalIgnoreCase) ? ComputeDevice.Cuda : ComputeDevice.Cpu, r.GetValue(batch), r.GetValue(epochs),
            r.GetValue(threads), r.GetValue(trainingSize)));
        return command;
    }

    private static int Run(ComputeDevice device, int batch, int epochs, int? threads, int trainingSize)
    {
        TorchRuntime.EnsureAvailable();
        if (threads is int count)
            TorchSharp.torch.set_num_threads(count);
        Console.WriteLine($"device {device}, torch threads {TorchSharp.torch.get_num_threads()}, inference batch {batch}");

        // Inference, 256×256 input: layer2 128×32×32, layer3 256×16×16, layer4 512×8×8.
        LayerShape[] at256 = { new(128, 32, 32), new(256, 16, 16), new(512, 8, 8) };
        if (batch > 0)
        {
            MeasureInference("layer2+layer3", at256[..2], batch, device);
            MeasureInference("layer2..layer4", at256, batch, device);
        }
        if (epochs <= 0)
            return 0;

        // Training, 60 images at 128×128 (128×16×16, 256×8×8, 512×4×4) or 256×256 input: LibTorch (the earlier path)
        // against CflowCpuStep, alternately, the same epochs each; both must give the same model.
        LayerShape[] training = trainingSize == 256 ? at256 : [new(128, 16, 16), new(256, 8, 8), new(512, 4, 4)];
        var features = RandomFeatures(training, 60, 2);
        var probe = RandomFeatures(training, 2, 3);
        var options = new CflowTrainingOptions { Epochs = epochs, Device = device };
        double libTorchSeconds = double.MaxValue, cpuStepSeconds = double.MaxValue;
        float[][]? libTorchLogLikelihoods = null, cpuStepLogLikelihoods = null;
        for (int round = 0; round < 2; round++)
        {
            foreach (bool throughLibTorch in new[] { true, false })
            {
                // Until the last epoch's report: the references computed after training are not part of an epoch.
                var clock = Stopwatch.StartNew();
                double trained = 0;
                using var model = CflowTrainer.Train(features, options, new Reporter(p => trained = clock.Elapsed.TotalSeconds), default, throughLibTorch);
                double seconds = trained / epochs;
                Console.WriteLine($"  round {round + 1}, {(throughLibTorch ? "LibTorch" : "CflowCpuStep")}: {seconds:F2} s/epoch");
                if (throughLibTorch)
                {
                    libTorchSeconds = Math.Min(libTorchSeconds, seconds);
                    libTorchLogLikelihoods = Evaluate(model, probe);
                }
                else
                {
                    cpuStepSeconds = Math.Min(cpuStepSeconds, seconds);
                    cpuStepLogLikelihoods = Evaluate(model, probe);
                }
            }
        }
        double difference = libTorchLogLikelihoods!.Zip(cpuStepLogLikelihoods!, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max();
        double scale = libTorchLogLikelihoods!.Max(a => a.Max(Math.Abs));
        Console.WriteLine($"training 60 images at {trainingSize}×{trainingSize}, {epochs} epoch(s) per run, best of 2: LibTorch " +
                          $"{libTorchSeconds:F2} s/epoch, CflowCpuStep {cpuStepSeconds:F2} s/epoch; probe log-likelihoods differ by at most {difference:G3} (of {scale:G3})");
        Console.WriteLine($"cflow_epoch_cpu_step_vs_libtorch={cpuStepSeconds / libTorchSeconds:F3}");
        return 0;
    }

    private static float[][] Evaluate(CflowModel model, InMemoryFeatureSource source)
    {
        var maps = model.Layers.Select((s, l) =>
        {
            var all = new float[source.Count * s.Size];
            for (int i = 0; i < source.Count; i++)
                source.Read(i, l, all.AsSpan(i * s.Size, s.Size));
            return all;
        }).ToArray();
        var output = model.Layers.Select(s => new float[source.Count * s.Height * s.Width]).ToArray();
        model.LogLikelihoods(maps, source.Count, output);
        return output;
    }

    private static void MeasureInference(string name, LayerShape[] layers, int batch, ComputeDevice device)
    {
        using var model = CflowTrainer.Train(RandomFeatures(layers, 2, 1), new CflowTrainingOptions { Epochs = 1, BatchSize = 2, Device = device });
        var maps = layers.Select((s, l) => RandomArray(batch * s.Size, 10 + l)).ToArray();
        var output = layers.Select(s => new float[batch * s.Height * s.Width]).ToArray();
        model.LogLikelihoods(maps, batch, output);   // warm-up
        const int repeats = 3;
        var cpu = CpuSeconds();
        var watch = Stopwatch.StartNew();
        for (int r = 0; r < repeats; r++)
            model.LogLikelihoods(maps, batch, output);
        double seconds = watch.Elapsed.TotalSeconds / repeats;
        double cpuSeconds = (CpuSeconds() - cpu) / repeats;
        Console.WriteLine($"inference {name} (256×256 input): {batch / seconds:F1} images/s wall ({1000 * seconds / batch:F1} ms/image), " +
                          $"{1000 * cpuSeconds / batch:F1} CPU-ms/image");
    }

    private static double CpuSeconds() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    private static InMemoryFeatureSource RandomFeatures(LayerShape[] layers, int count, int seed)
    {
        var source = new InMemoryFeatureSource(layers);
        for (int i = 0; i < count; i++)
            source.Add(layers.Select((s, l) => RandomArray(s.Size, seed * 1000 + i * 10 + l)).ToArray());
        return source;
    }

    private static float[] RandomArray(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }

    private sealed class Reporter(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
