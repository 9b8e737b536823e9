switch (args.Length > 0 ? args[0] : "")
{
    case "scorer": return ScorerBenchmark.Run(args[1..]);
    default:
        Console.WriteLine("usage: dotnet run -c Release --project bench -- <benchmark>");
        return 1;
}
