// Benchmarks: dotnet run -c Release --project bench -- <name> [arguments] (--help lists them). Each prints its figures as
// ratios measured side by side in one run, its last line a key=value result.
using System.CommandLine;
using AnomalyVision.Samples;

var root = new RootCommand("Anomaly.Vision benchmarks.")
{
    BackboneBenchmark.Command(), ScorerBenchmark.Command(), CfaBenchmark.Command(), CfaTrainBenchmark.Command(),
    CflowBenchmark.Command(), DfmBenchmark.Command(), CflowMapBenchmark.Command(), OnnxExportBenchmark.Command(), ServiceBenchmark.Command(),
};
ParseResult parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    parsed.Invoke();
    return CommandLineParsing.UsageErrorExitCode;
}
return parsed.Invoke();
