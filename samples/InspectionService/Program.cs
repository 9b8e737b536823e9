// The inspection service: an HTTP API and an operator page over the detectors saved in a folder.
//
//   dotnet run -c Release --project samples/InspectionService                       (models from artifacts/quickstart)
//   dotnet run -c Release --project samples/InspectionService -- --models <folder> --data <folder> --urls http://0.0.0.0:5080
//   curl -F image=@part.png http://127.0.0.1:5080/api/inspect/cfa
using InspectionService;

InspectionServiceApp.Create(args).Run();

/// <summary>The service's entry point (public for the integration tests' WebApplicationFactory).</summary>
public partial class Program;
