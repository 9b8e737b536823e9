switch (args.FirstOrDefault())
{
    case "backbone": return BackboneBenchmark.Run(args[1..]);
}
Console.WriteLine("usage: dotnet run -c Release --project bench -- <benchmark>");
return 1;
