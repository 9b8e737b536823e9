// Benchmarks: dotnet run -c Release --project bench -- <name>. Each prints its figures as ratios
// measured side by side in one run, its last line a key=value result.
switch (args.FirstOrDefault())
{
    case "backbone": return BackboneBenchmark.Run(args[1..]);
    case "scorer": return ScorerBenchmark.Run(args[1..]);
    case "cfa": return CfaBenchmark.Run(args[1..]);
    case "cfa-train": return CfaTrainBenchmark.Run(args[1..]);
    case "cflow": return CflowBenchmark.Run(args[1..]);
    case "dfm": return DfmBenchmark.Run(args[1..]);
    case "cflow-map": return CflowMapBenchmark.Run(args[1..]);
    case "onnx": return OnnxExportBenchmark.Run(args[1..]);
    case "service": return await ServiceBenchmark.Run(args[1..]);
    default:
        Console.WriteLine("usage: dotnet run -c Release --project bench -- backbone|scorer|cfa|cfa-train|cflow|cflow-map|dfm|onnx|service");
        return 1;
}
