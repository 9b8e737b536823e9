using System.CommandLine;
using System.Diagnostics;
using Anomaly.Vision.Training;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;
using static TorchSharp.torch;

/// <summary>
/// CFA against this machine's floor, all measured in one run:
/// <list type="number">
/// <item>the GEMM rate R: the fastest of LibTorch's (mm and 1×1 convolution) and <see cref="PackedGemm"/>'s fp32 product
/// of the distance's shape (patches × channels times channels × bank);</item>
/// <item>a training epoch against the floor images × (2·P·M·C distances + 3 × 2·P·(C_in + 2)·C descriptor forward,
/// weight gradient and its share) / R: on random features of ResNet-18's layer1–3 shapes, where the bound that skips
/// bank entries skips none and every distance is computed; and, given <c>--images</c>, on the ImageNet ResNet-18's
/// features of real images, with the bound and with every entry scanned;</item>
/// <item>scoring end to end (PNG files through <c>Transform</c>, the default ImageNet backbone) and the same stages one
/// by one, each run as <c>Transform</c> runs it (a batch at a time; decode, resize, map and blur one image per core):
/// decode, resize and normalise, backbone, descriptor, distances (with the bound, and every entry scanned for
/// comparison), map (softmin and upsampling), blur.</item>
/// </list>
/// Options: <c>--size 256 --train-images 8 --epochs 3 --score-images 16 --png-size 900 --images &lt;folder of PNGs&gt;</c>.
/// Times are taken in wall-clock and in process CPU time; on a machine shared with other work the CPU time is the
/// steadier, and <c>cfa_epoch_vs_floor</c> is the CPU-time ratio (both are printed).
/// Last lines: <c>gemm_gflop_per_second=</c> (wall), <c>gemm_gflop_per_cpu_second=</c>, <c>cfa_dense_epoch_vs_floor=</c>
/// (random features), <c>cfa_epoch_vs_floor=</c> (real features when given, else random), <c>cfa_scoring_images_per_second=</c>.
/// </summary>
internal static class CfaTrainBenchmark
{
    private static readonly string[] CfaLayers = ["layer1", "layer2", "layer3"];

    public static Command Command()
    {
        var size = new Option<int>("--size") { Description = "Input size in pixels.", DefaultValueFactory = _ => 256 };
        var trainImages = new Option<int>("--train-images") { Description = "Training images.", DefaultValueFactory = _ => 16 };
        var epochs = new Option<int>("--epochs") { Description = "Training epochs (at least 2).", DefaultValueFactory = _ => 3 };
        var scoreImages = new Option<int>("--score-images") { Description = "Images to score.", DefaultValueFactory = _ => 16 };
        var pngSize = new Option<int>("--png-size") { Description = "Size of the synthetic PNGs.", DefaultValueFactory = _ => 900 };
        var images = new Option<string?>("--images") { Description = "A folder of PNGs. Default: synthetic PNGs." };
        var command = new Command("cfa-train", "CFA training epoch and scoring against the GEMM floor.") { size, trainImages, epochs, scoreImages, pngSize, images };
        command.SetAction(r => Run(r.GetValue(size), r.GetValue(trainImages), r.GetValue(epochs), r.GetValue(scoreImages), r.GetValue(pngSize), r.GetValue(images)));
        return command;
    }

    private static int Run(int size, int trainImages, int epochs, int scoreImages, int pngSize, string? imageFolder)
    {
        if (epochs < 2)
        {
            Console.Error.WriteLine("--epochs must be at least 2 (the first epoch also warms up).");
            return 1;
        }

        TorchRuntime.EnsureAvailable();
        LayerShape[] layers = [new(64, size / 4, size / 4), new(128, size / 8, size / 8), new(256, size / 16, size / 16)];
        int patches = layers[0].Height * layers[0].Width, channels = layers.Sum(l => l.Channels);
        Console.WriteLine($"CFA at {size}×{size}: {patches} patches, bank {patches}, {channels} channels; {Environment.ProcessorCount} cores, " +
                          $"TorchSharp threads {get_num_threads()}, Vector512 accelerated: {System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated}");

        // The GEMM is measured before and after the epochs and the faster taken, in wall-clock and in process CPU time:
        // on a shared machine the CPU time (what this process's threads spent) is the steadier of the two.
        var before = GemmRate(patches, channels, patches);
        var randomSource = RandomFeatures(layers, trainImages);
        var dense = EpochTime("random features", randomSource, epochs, projectionRank: null);
        InMemoryFeatureSource? realSource = imageFolder is null ? null : RealFeatures(imageFolder, size, trainImages);
        Times? real = realSource is null ? null : EpochTime("real features", realSource, epochs, projectionRank: null);
        Times? realEveryEntry = realSource is null ? null : EpochTime("real features, every entry scanned", realSource, epochs, projectionRank: 0);
        var after = GemmRate(patches, channels, patches);
        var gemm = new Times(Math.Max(before.Wall, after.Wall), Math.Max(before.Cpu, after.Cpu));
        double perImageFlop = 2.0 * patches * patches * channels + 3 * 2.0 * patches * (channels + 2) * channels;
        var floor = new Times(trainImages * perImageFlop / (gemm.Wall * 1e9), trainImages * perImageFlop / (gemm.Cpu * 1e9));
        Console.WriteLine($"floor of an epoch of {trainImages} images: {trainImages} × {perImageFlop / 1e9:F2} GFLOP at {gemm.Wall:F1} GFLOP/s wall = " +
                          $"{floor.Wall:F2} s, at {gemm.Cpu:F1} GFLOP per CPU-second = {floor.Cpu:F2} s CPU");
        void Report(string name, Times epoch) =>
            Console.WriteLine($"epoch vs floor, {name}: {epoch.Wall:F2} s wall ({epoch.Wall / floor.Wall:F3}), {epoch.Cpu:F2} s CPU ({epoch.Cpu / floor.Cpu:F3})");
        Report("random features", dense);
        if (real is Times r && realEveryEntry is Times e)
        {
            Report("real features", r);
            Report("real features, every entry scanned", e);
            Console.WriteLine($"real features, epoch with the bound vs every entry scanned (CPU time): {r.Cpu / e.Cpu:F3}");
        }

        double imagesPerSecond = Scoring(size, scoreImages, pngSize, imageFolder, trainImages);

        Console.WriteLine($"gemm_gflop_per_second={gemm.Wall:F1}");
        Console.WriteLine($"gemm_gflop_per_cpu_second={gemm.Cpu:F1}");
        Console.WriteLine($"cfa_dense_epoch_vs_floor={dense.Cpu / floor.Cpu:F3}");
        Console.WriteLine($"cfa_epoch_vs_floor={(real ?? dense).Cpu / floor.Cpu:F3}");
        Console.WriteLine($"cfa_scoring_images_per_second={imagesPerSecond:F2}");
        return 0;
    }

    /// <summary>
    /// The fastest of three fp32 [m, k] × [k, n] products, in GFLOP/s (median of 7 runs each after a warm-up, interleaved):
    /// LibTorch's <c>mm</c> (MKL), LibTorch's 1×1 <c>conv2d</c> (oneDNN) and <see cref="PackedGemm"/>. The fastest makes
    /// the strictest floor.
    /// </summary>
    private static Times GemmRate(int m, int k, int n)
    {
        using var scope = NewDisposeScope();
        var a = rand(m, k);
        var b = rand(k, n);
        var aValues = a.data<float>().ToArray();
        var bValues = b.data<float>().ToArray();
        var c = new float[m * n];
        // The same product as a 1×1 convolution: k input channels on an m-pixel grid, n output channels.
        int side = (int)Math.Sqrt(m);
        var image = side * side == m ? rand(1, k, side, side) : rand(1, k, 1, m);
        var kernel = rand(n, k, 1, 1);
        var libTorch = new List<Times>();
        var convolution = new List<Times>();
        var packed = new List<Times>();
        for (int r = 0; r < 9; r++)
        {
            var start = Times.Now();
            mm(a, b).Dispose();
            var afterMm = Times.Now();
            nn.functional.conv2d(image, kernel).Dispose();
            var afterConvolution = Times.Now();
            PackedGemm.Multiply(m, n, k, aValues, k, 1, bValues, n, 1, c, accumulate: false);
            var end = Times.Now();
            if (r >= 2)
            {
                libTorch.Add(afterMm - start);
                convolution.Add(afterConvolution - afterMm);
                packed.Add(end - afterConvolution);
            }
        }
        double flop = 2.0 * m * n * k;
        Times Rate(List<Times> times) => new(flop / times.Select(t => t.Wall).Order().ElementAt(times.Count / 2) / 1e9,
                                             flop / times.Select(t => t.Cpu).Order().ElementAt(times.Count / 2) / 1e9);
        var rates = new[] { Rate(libTorch), Rate(convolution), Rate(packed) };
        Console.WriteLine($"GEMM fp32 {m}×{k} · {k}×{n} (medians, GFLOP/s wall / per CPU-second): LibTorch mm {rates[0].Wall:F1} / {rates[0].Cpu:F1}; " +
                          $"LibTorch conv2d 1×1 {rates[1].Wall:F1} / {rates[1].Cpu:F1}; PackedGemm (C#) {rates[2].Wall:F1} / {rates[2].Cpu:F1}");
        return new Times(rates.Max(r => r.Wall), rates.Max(r => r.Cpu));
    }

    /// <summary>Wall-clock and process CPU seconds (or rates).</summary>
    private readonly record struct Times(double Wall, double Cpu)
    {
        private static readonly Stopwatch Clock = Stopwatch.StartNew();

        public static Times Now()
        {
            using var process = Process.GetCurrentProcess();
            return new Times(Clock.Elapsed.TotalSeconds, process.TotalProcessorTime.TotalSeconds);
        }

        public static Times operator -(Times a, Times b) => new(a.Wall - b.Wall, a.Cpu - b.Cpu);
    }

    private static InMemoryFeatureSource RandomFeatures(LayerShape[] layers, int images)
    {
        var source = new InMemoryFeatureSource(layers);
        var random = new Random(0);
        for (int i = 0; i < images; i++)
            source.Add(layers.Select(s => Enumerable.Range(0, s.Size).Select(_ => (float)random.NextDouble()).ToArray()).ToArray());
        return source;
    }

    /// <summary>The ImageNet ResNet-18's layer1–3 maps of the first <paramref name="images"/> PNGs of a folder.</summary>
    private static InMemoryFeatureSource RealFeatures(string folder, int size, int images)
    {
        using var backbone = OnnxBackbone.FromBytes(ImageNetBackbones.ResNet18().GetOnnxBytes(), CfaLayers);
        var source = new InMemoryFeatureSource(backbone.GetLayerShapes(size, size).ToArray());
        var pixels = new float[3 * size * size];
        foreach (string path in Directory.GetFiles(folder, "*.png").Order().Take(images))
        {
            using (var image = ImageTensorConverter.LoadImage(path))
                ImageTensorConverter.ToNormalizedChw(image, size, size, pixels);
            source.Add(backbone.Run(pixels, 1, size, size));
        }
        return source;
    }

    /// <summary>Median epoch time of CFA training (the first epoch, which also warms up, excluded).</summary>
    private static Times EpochTime(string name, InMemoryFeatureSource source, int epochs, int? projectionRank)
    {
        var options = new CfaTrainingOptions { Epochs = epochs, Device = ComputeDevice.Cpu };
        var marks = new List<Times>();
        var progress = new SyncProgress(p =>
        {
            if (p.Stage == "training" || p.Step == p.Steps)
                marks.Add(Times.Now());
        });
        CfaTrainer.Train(source, options, progress, default, chunkBytes: null, cpuKernels: true, projectionRank);
        // marks: bank done (also reported per batch; the last one counts), then one per epoch.
        var epochTimes = marks.Skip(marks.Count - epochs - 1).Zip(marks.Skip(marks.Count - epochs), (a, b) => b - a).ToArray();
        Console.WriteLine($"training epochs on {name} ({source.Count} images, batch {options.BatchSize}), wall/CPU s: " +
                          string.Join(", ", epochTimes.Select(t => $"{t.Wall:F2}/{t.Cpu:F2}")));
        var timed = epochTimes.Skip(1).ToArray();
        return new Times(timed.Select(t => t.Wall).Order().ElementAt((timed.Length - 1) / 2), timed.Select(t => t.Cpu).Order().ElementAt((timed.Length - 1) / 2));
    }

    /// <summary>Images per second end to end, and the stages timed one by one on the same images.</summary>
    private static double Scoring(int size, int count, int pngSize, string? imageFolder, int fitImages)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"cfa-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(folder);
        try
        {
            string[] paths = imageFolder is null
                ? WritePngs(folder, count, pngSize)
                : Directory.GetFiles(imageFolder, "*.png").Order().Take(count).ToArray();
            byte[] backboneBytes = ImageNetBackbones.ResNet18().GetOnnxBytes();

            var ml = new MLContext(seed: 0);
            var data = ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { ImagePath = p }));
            var fitData = ml.Data.LoadFromEnumerable(paths.Take(fitImages).Select(p => new ImagePathRow { ImagePath = p }));
            // The bank of the first images, untrained descriptor: training changes how many entries the bound skips little.
            var options = new CfaOptions { InputColumnName = nameof(ImagePathRow.ImagePath), ImageHeight = size, ImageWidth = size, Epochs = 0 };
            using var model = ml.Transforms.DetectCfaAnomalies(options).Fit(fitData);
            int batch = model.ScoringBatchSize;

            double ScoreAll() => ml.Data.CreateEnumerable<ScoreRow>(model.Transform(data), reuseRowObject: true).Sum(r => r.Score);
            var clock = Stopwatch.StartNew();
            ScoreAll();
            double firstPass = clock.Elapsed.TotalSeconds;
            clock.Restart();
            ScoreAll();
            double endToEnd = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"scoring's first pass (code not yet compiled or tiered up): {paths.Length / firstPass:F2} images/s");
            double imagesPerSecond = paths.Length / endToEnd;
            Console.WriteLine($"scoring end to end: {paths.Length} {(imageFolder is null ? $"synthetic {pngSize}×{pngSize}" : "")} PNG images in {endToEnd:F2} s, " +
                              $"{imagesPerSecond:F2} images/s (batch {batch})");

            StageBreakdown(paths, size, batch, backboneBytes, fitImages);
            return imagesPerSecond;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Each scoring stage over the same images, batch by batch as the transformer runs it, with its share of their sum.</summary>
    private static void StageBreakdown(string[] paths, int size, int batch, byte[] backboneBytes, int fitImages)
    {
        var stages = new (string Name, double Seconds)[]
        {
            ("decode", 0), ("resize+normalise", 0), ("backbone", 0), ("descriptor pooling", 0), ("descriptor products", 0), ("distances", 0), ("map", 0), ("blur", 0),
        };
        double everyEntrySeconds = 0, exactFraction = 0;
        var clock = new Stopwatch();
        void Time(int stage, Action action)
        {
            clock.Restart();
            action();
            stages[stage].Seconds += clock.Elapsed.TotalSeconds;
        }

        using var backbone = OnnxBackbone.FromBytes(backboneBytes, CfaLayers);
        var shapes = backbone.GetLayerShapes(size, size).ToArray();
        int imageFloats = 3 * size * size;
        // A model with the real layer shapes; its bank comes from the first images' features.
        var source = new InMemoryFeatureSource(shapes);
        CfaModel? cfa = null;
        MemoryBankScorer? scorer = null, everyEntry = null;
        var blur = new GaussianBlur(4f);
        int grid = shapes[0].Height * shapes[0].Width;
        var images = new float[batch * imageFloats];
        var upsampled = new float[batch * size * size];
        var blurred = new float[batch * size * size];
        PatchMajorDescriptor? descriptor = null;
        float[] features = [];
        float[] distances = [];
        for (int round = 0; round < 2; round++)
        {
            // Round 0 warms up and builds the model; round 1 is timed.
            for (int s = 0; s < stages.Length; s++)
                stages[s].Seconds = 0;
            everyEntrySeconds = exactFraction = 0;
            for (int start = 0; start < paths.Length; start += batch)
            {
                int n = Math.Min(batch, paths.Length - start);
                ImageStages.Load(paths, start, n, size, images, Time);
                float[][] maps = [];
                Time(2, () => maps = backbone.Run(images.AsSpan(0, n * imageFloats), n, size, size));
                for (int i = 0; i < n && cfa is null && source.Count < fitImages; i++)
                    source.Add(maps.Select((m, l) => m.AsSpan(i * shapes[l].Size, shapes[l].Size).ToArray()).ToArray());
                if (cfa is null)
                {
                    cfa = CfaTrainer.Train(source, new CfaTrainingOptions { Epochs = 0, Device = ComputeDevice.Cpu });
                    scorer = new MemoryBankScorer(cfa.MemoryBank.ToArray(), cfa.BankSize, cfa.DescriptorChannels);
                    everyEntry = new MemoryBankScorer(cfa.MemoryBank.ToArray(), cfa.BankSize, cfa.DescriptorChannels,
                        scorer.UsesVector512, MemoryBankScorer.DefaultDepthBlock, projectionRank: 0);
                    descriptor = new PatchMajorDescriptor(shapes, cfa.DescriptorChannels);
                    features = new float[batch * grid * cfa.DescriptorChannels];
                    distances = new float[batch * grid * cfa.NumNearestNeighbors];
                }
                // The descriptor as CfaModel.Describe runs it, its two parts timed apart.
                Time(3, () => descriptor!.Pool(maps, n));
                Time(4, () => descriptor!.Combine(n, cfa.DescriptorWeight, cfa.DescriptorBias, features));
                // Distances of the batch's patches in one search, then the maps one image per core, as CfaAnomalyMapGenerator runs them.
                int k = cfa.NumNearestNeighbors, batchPatches = n * grid;
                Time(5, () => scorer!.NearestSquaredDistances(features.AsSpan(0, batchPatches * cfa.DescriptorChannels), batchPatches, k, distances));
                exactFraction += scorer!.LastScanExactFraction * n / paths.Length;
                clock.Restart();
                everyEntry!.NearestSquaredDistances(features.AsSpan(0, batchPatches * cfa.DescriptorChannels), batchPatches, k, distances);
                everyEntrySeconds += clock.Elapsed.TotalSeconds;
                Time(6, () => Parallel.For(0, n, i =>
                {
                    var patchScores = new float[grid];
                    AnomalyMapMath.SoftminNearest(distances.AsSpan(i * grid * k, grid * k), grid, k, patchScores);
                    AnomalyMapMath.BilinearResize(patchScores, shapes[0].Height, shapes[0].Width, upsampled.AsSpan(i * size * size, size * size), size, size, alignCorners: false);
                }));
                Time(7, () => Parallel.For(0, n, i => blur.Apply(upsampled.AsSpan(i * size * size, size * size), size, size, blurred.AsSpan(i * size * size, size * size))));
            }
        }
        double total = stages.Sum(s => s.Seconds);
        Console.WriteLine($"scoring stages one by one, batches of {batch} ({paths.Length} images, {paths.Length / total:F2} images/s if run back to back):");
        foreach (var (name, seconds) in stages)
            Console.WriteLine($"  {name,-17} {seconds * 1e3 / paths.Length,8:F1} ms/image {100 * seconds / total,6:F1} %");
        Console.WriteLine($"distances: {100 * exactFraction:F1} % of the bank's 16-entry groups computed exactly; every entry scanned: " +
                          $"{everyEntrySeconds * 1e3 / paths.Length:F1} ms/image ({everyEntrySeconds / stages[5].Seconds:F2}× the time with the bound)");
    }

    /// <summary>Writes PNGs of a smooth shaded disc with mild noise, like a photographed part (noise-only images would decode slower).</summary>
    internal static string[] WritePngs(string folder, int count, int pngSize)
    {
        var paths = new string[count];
        var random = new Random(1);
        var pixels = new byte[pngSize * pngSize * 3];
        for (int i = 0; i < count; i++)
        {
            for (int y = 0; y < pngSize; y++)
            {
                for (int x = 0; x < pngSize; x++)
                {
                    double dx = x - pngSize / 2.0, dy = y - pngSize / 2.0, r = Math.Sqrt(dx * dx + dy * dy) / pngSize;
                    double shade = r < 0.4 ? 160 + 60 * Math.Cos(r * 12 + i) : 30 + 20 * Math.Sin(x * 0.01 + y * 0.02);
                    for (int c = 0; c < 3; c++)
                        pixels[(y * pngSize + x) * 3 + c] = (byte)Math.Clamp(shade + 10 * c + random.Next(-6, 7), 0, 255);
                }
            }
            paths[i] = Path.Combine(folder, $"{i:D3}.png");
            PngEncoder.Write(paths[i], pixels, pngSize, pngSize, 3);
        }
        return paths;
    }

    private sealed class ImagePathRow
    {
        public string ImagePath { get; set; } = "";
    }

    private sealed class ScoreRow
    {
        public float Score { get; set; }
    }

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
