using System.CommandLine;
using System.Diagnostics;
using System.Runtime.Intrinsics;
using Google.Protobuf;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Cfa;
using Microsoft.ML.Anomaly.Vision.Export;
using Microsoft.ML.Anomaly.Vision.Onnx;
using Microsoft.ML.OnnxRuntime;

/// <summary>
/// Memory-bank scoring speed: <see cref="MemoryBankScorer"/> against ONNX Runtime running the same
/// computation (ReduceSumSquare + MatMul + Add + TopK + Add) on the same data, side by side.
/// Options: <c>--patches N --bank M --channels C --k K --reps R --vector 256|512 --depth D</c>.
/// The last line printed is <c>scorer_vs_onnxruntime=&lt;our median time / ONNX Runtime's median time&gt;</c>.
/// </summary>
internal static class ScorerBenchmark
{
    public static Command Command()
    {
        var patches = new Option<int>("--patches") { Description = "Patches scored.", DefaultValueFactory = _ => 4096 };
        var bank = new Option<int>("--bank") { Description = "Memory bank entries.", DefaultValueFactory = _ => 4096 };
        var channels = new Option<int>("--channels") { Description = "Channels.", DefaultValueFactory = _ => 448 };
        var k = new Option<int>("--k") { Description = "Nearest neighbours.", DefaultValueFactory = _ => 3 };
        var reps = new Option<int>("--reps") { Description = "Repetitions.", DefaultValueFactory = _ => 9 };
        var vector = new Option<int>("--vector") { Description = "Vector width, 256 or 512. Default: 512 where accelerated.", DefaultValueFactory = _ => Vector512.IsHardwareAccelerated ? 512 : 256 };
        var depth = new Option<int>("--depth") { Description = "Depth block.", DefaultValueFactory = _ => MemoryBankScorer.DefaultDepthBlock };
        var command = new Command("scorer", "Memory-bank scoring against ONNX Runtime.") { patches, bank, channels, k, reps, vector, depth };
        command.SetAction(r => Run(r.GetValue(patches), r.GetValue(bank), r.GetValue(channels), r.GetValue(k), r.GetValue(reps), r.GetValue(vector) == 512, r.GetValue(depth)));
        return command;
    }

    private static int Run(int patches, int bankSize, int channels, int k, int reps, bool use512, int depth)
    {

        var rng = new Random(42);
        float[] features = RandomArray(rng, patches * channels);
        float[] bank = RandomArray(rng, bankSize * channels);
        double gflop = 2.0 * patches * bankSize * channels / 1e9;
        Console.WriteLine($"shape: {patches} patches x {channels} channels x {bankSize} bank entries, k={k}; {gflop:F2} GFLOP per run; "
            + $"{Environment.ProcessorCount} threads; Vector512 accelerated: {Vector512.IsHardwareAccelerated}");

        var sw = Stopwatch.StartNew();
        var scorer = new MemoryBankScorer(bank, bankSize, channels, use512, depth, projectionRank: 0);
        Console.WriteLine($"scorer: packed the bank in {sw.Elapsed.TotalMilliseconds:F1} ms ({(use512 ? "Vector512" : "Vector256")} kernel, {depth} channels per pass)");
        float[] ours = new float[patches * k];

        using var options = new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        using var session = new InferenceSession(BuildModel(bank, bankSize, channels, k), options);
        using var input = OrtValue.CreateTensorValueFromMemory(features, new long[] { patches, channels });
        using var runOptions = new RunOptions();
        string[] inputNames = { "features" };
        string[] outputNames = { "distances" };
        float[] theirs = new float[patches * k];

        void RunOurs() => scorer.NearestSquaredDistances(features, patches, k, ours);
        void RunTheirs()
        {
            using var outputs = session.Run(runOptions, inputNames, new[] { input }, outputNames);
            outputs[0].GetTensorDataAsSpan<float>().CopyTo(theirs);
        }

        // Warm-up (JIT, ORT allocations), then interleaved timed repetitions.
        RunOurs(); RunTheirs(); RunOurs(); RunTheirs();
        var oursMs = new List<double>();
        var theirsMs = new List<double>();
        var oursCpuMs = new List<double>();
        var theirsCpuMs = new List<double>();
        using var process = Process.GetCurrentProcess();
        for (int r = 0; r < reps; r++)
        {
            Measure(RunOurs, oursMs, oursCpuMs);
            Measure(RunTheirs, theirsMs, theirsCpuMs);
        }

        void Measure(Action action, List<double> wall, List<double> cpu)
        {
            process.Refresh();
            TimeSpan cpuStart = process.TotalProcessorTime;
            sw.Restart();
            action();
            wall.Add(sw.Elapsed.TotalMilliseconds);
            process.Refresh();
            cpu.Add((process.TotalProcessorTime - cpuStart).TotalMilliseconds);
        }

        double maxDiff = 0;
        for (int i = 0; i < ours.Length; i++)
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - theirs[i]) / Math.Max(1.0, Math.Abs(theirs[i])));

        double oursMedian = Median(oursMs), theirsMedian = Median(theirsMs);
        Console.WriteLine($"scorer (fused distance + top-k): median {oursMedian,8:F2} ms  {gflop / (oursMedian / 1e3),7:F1} GFLOP/s  (best {oursMs.Min():F2} ms, {gflop / (oursMs.Min() / 1e3):F1} GFLOP/s)  runs [{string.Join(", ", oursMs.Select(t => t.ToString("F1")))}]");
        Console.WriteLine($"onnxruntime (MatMul + TopK):     median {theirsMedian,8:F2} ms  {gflop / (theirsMedian / 1e3),7:F1} GFLOP/s  (best {theirsMs.Min():F2} ms, {gflop / (theirsMs.Min() / 1e3):F1} GFLOP/s)  runs [{string.Join(", ", theirsMs.Select(t => t.ToString("F1")))}]");
        Console.WriteLine($"process CPU time per run (median): scorer {Median(oursCpuMs):F1} ms, onnxruntime {Median(theirsCpuMs):F1} ms");
        Console.WriteLine($"max relative difference of the distances: {maxDiff:E2}");
        Console.WriteLine($"scorer_vs_onnxruntime={oursMedian / theirsMedian:F3}");
        return 0;
    }

    private static float[] RandomArray(Random rng, int length)
    {
        var a = new float[length];
        for (int i = 0; i < a.Length; i++)
            a[i] = (float)rng.NextDouble();
        return a;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
    }

    /// <summary>
    /// An ONNX model (opset 13) computing the k smallest squared distances as the CFA export writes them:
    /// TopK(features·(−2·bankᵀ) + |bank|², k, smallest) + ReduceSumSquare(features).
    /// </summary>
    private static byte[] BuildModel(float[] bank, int bankSize, int channels, int k)
    {
        var graph = new OnnxGraphBuilder(13, "bench");
        graph.Graph.Name = "memory_bank_knn";
        graph.Graph.Input.Add(OnnxGraphBuilder.FloatTensorInfo("features", OnnxGraphBuilder.Dim("patches"), OnnxGraphBuilder.Dim(channels)));
        string nearest = CfaOnnxExport.NearestSquaredDistances(graph, "features", bank, bankSize, channels, k, featureAxis: 1);
        graph.Graph.Node.Add(new NodeProto { Name = "distances", OpType = "Identity", Input = { nearest }, Output = { "distances" } });
        graph.Graph.Output.Add(OnnxGraphBuilder.FloatTensorInfo("distances", OnnxGraphBuilder.Dim("patches"), OnnxGraphBuilder.Dim(k)));
        var model = new ModelProto { IrVersion = 8, ProducerName = "anomaly-vision-bench", Graph = graph.Graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return model.ToByteArray();
    }
}
