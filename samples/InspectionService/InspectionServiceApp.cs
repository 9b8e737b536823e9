using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

namespace InspectionService;

/// <summary>Builds the service: configuration, services, and the routes of <see cref="InspectionEndpoints"/>.</summary>
public static class InspectionServiceApp
{
    /// <summary>The address the service listens on when neither <c>--urls</c> nor ASPNETCORE_URLS names one.</summary>
    public const string DefaultUrl = "http://127.0.0.1:5080";

    /// <summary>Room for the multipart framing around the image, beyond <see cref="ServiceOptions.MaxUploadBytes"/>.</summary>
    private const long MultipartSlackBytes = 64 * 1024;

    /// <summary>Creates the application from command-line arguments; <paramref name="configure"/> may change the builder before it is built.</summary>
    public static WebApplication Create(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        builder.Configuration.AddCommandLine(args, new Dictionary<string, string>
        {
            ["--models"] = $"{ServiceOptions.Section}:{nameof(ServiceOptions.ModelsFolder)}",
            ["--data"] = $"{ServiceOptions.Section}:{nameof(ServiceOptions.DataFolder)}",
        });
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["http_ports"]))
            builder.WebHost.UseUrls(DefaultUrl);

        builder.Services.AddOptions<ServiceOptions>()
            .Bind(builder.Configuration.GetSection(ServiceOptions.Section));
        builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptions<ServiceOptions>>((kestrel, options) =>
            kestrel.Limits.MaxRequestBodySize = options.Value.MaxUploadBytes + MultipartSlackBytes);
        builder.Services.AddOptions<FormOptions>().Configure<IOptions<ServiceOptions>>((form, options) =>
            form.MultipartBodyLengthLimit = options.Value.MaxUploadBytes + MultipartSlackBytes);
        builder.Services.AddProblemDetails();
        builder.Services.AddSingleton<ModelCatalog>();
        builder.Services.AddHostedService(services => services.GetRequiredService<ModelCatalog>());
        builder.Services.AddSingleton<InspectionQueue>();
        builder.Services.AddHostedService<InspectionQueueWorker>();
        builder.Services.AddSingleton<IInspectionStore, SqliteInspectionStore>();
        builder.Services.AddSingleton<InspectionMetrics>();
        builder.Services.AddSingleton<InspectionHandler>();
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(InspectionMetrics.MeterName)
            .AddPrometheusExporter());
        configure?.Invoke(builder);

        var app = builder.Build();
        app.Services.GetRequiredService<IOptions<ServiceOptions>>().Value.Validate();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        var page = new EmbeddedFileProvider(typeof(InspectionServiceApp).Assembly, "Page");
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = page });
        app.UseStaticFiles(new StaticFileOptions { FileProvider = page });
        app.MapPrometheusScrapingEndpoint();
        InspectionEndpoints.Map(app);
        return app;
    }
}
