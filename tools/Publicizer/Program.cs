using Mono.Cecil;

namespace Anomaly.Vision.Tools.Publicizer;

/// <summary>
/// Writes reference copies of .NET assemblies in which every non-private type and member can be reached
/// from another assembly. Usage: <c>Publicizer &lt;output-directory&gt; &lt;assembly&gt;...</c>. Each copy keeps the
/// original name, version and public key, so code compiled against it binds to the original at run time
/// (where the compiled assembly declares <c>IgnoresAccessChecksToAttribute</c> for it).
/// </summary>
/// <remarks>
/// Rules: <c>private</c> types and members stay private (their names would otherwise clash with members of
/// derived classes). Other types become public, and so do other non-virtual members and <c>internal</c>
/// virtual members; virtual members that were <c>private protected</c> or <c>protected internal</c> become
/// <c>protected</c>, so a derived class in another assembly overrides them as <c>protected override</c>.
/// Types in <c>System.*</c> and <c>Microsoft.CodeAnalysis.*</c> namespaces (language polyfills) and
/// compiler-generated types stay as they are, so they never clash with the framework's own definitions.
/// </remarks>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: Publicizer <output-directory> <assembly.dll>...");
            return 2;
        }

        string outputDirectory = args[0];
        Directory.CreateDirectory(outputDirectory);
        string[] inputs = args.Skip(1).Select(Path.GetFullPath).ToArray();
        using var resolver = new DefaultAssemblyResolver();
        foreach (string directory in inputs.Select(i => Path.GetDirectoryName(i) ?? ".").Distinct())
            resolver.AddSearchDirectory(directory);
        try
        {
            foreach (string input in inputs)
            {
                string output = Path.Combine(outputDirectory, Path.GetFileName(input));
                int changed = Publicize(input, output, resolver);
                Console.WriteLine($"Publicizer: {Path.GetFileName(input)}: {changed} types and members opened -> {output}");
            }
        }
        catch (Exception ex) when (ex is IOException or BadImageFormatException or UnauthorizedAccessException or AssemblyResolutionException)
        {
            Console.Error.WriteLine($"Publicizer: error: {ex.Message}");
            return 1;
        }

        return 0;
    }

    private static int Publicize(string inputPath, string outputPath, IAssemblyResolver resolver)
    {
        if (!File.Exists(inputPath))
            throw new FileNotFoundException($"Assembly '{inputPath}' does not exist.", inputPath);

        // Read fully into memory so the output may be written next to (or over) the input.
        using var assembly = AssemblyDefinition.ReadAssembly(new MemoryStream(File.ReadAllBytes(inputPath)),
            new ReaderParameters { ReadingMode = ReadingMode.Immediate, ReadSymbols = false, AssemblyResolver = resolver });

        int changed = 0;
        foreach (ModuleDefinition module in assembly.Modules)
        {
            foreach (TypeDefinition type in module.Types)
                changed += OpenType(type, isNested: false);
        }

        // Write through a temporary file and a rename, so an interrupted build never leaves a truncated copy
        // that looks up to date.
        string temporary = outputPath + ".tmp";
        assembly.Write(temporary);
        File.Move(temporary, outputPath, overwrite: true);
        return changed;
    }

    private static int OpenType(TypeDefinition type, bool isNested)
    {
        if (IsCompilerGenerated(type) || (!isNested && IsPolyfillNamespace(type.Namespace)))
            return 0;

        int changed = 0;
        TypeAttributes visibility = type.Attributes & TypeAttributes.VisibilityMask;
        TypeAttributes wanted = isNested ? TypeAttributes.NestedPublic : TypeAttributes.Public;
        if (visibility == TypeAttributes.NestedPrivate)
            return 0;
        if (visibility != wanted)
        {
            type.Attributes = (type.Attributes & ~TypeAttributes.VisibilityMask) | wanted;
            changed++;
        }

        foreach (FieldDefinition field in type.Fields)
        {
            if (field.IsPublic || field.IsPrivate || field.Name.StartsWith('<'))
                continue;
            field.Attributes = (field.Attributes & ~FieldAttributes.FieldAccessMask) | FieldAttributes.Public;
            changed++;
        }

        foreach (MethodDefinition method in type.Methods)
        {
            MethodAttributes access = method.Attributes & MethodAttributes.MemberAccessMask;
            MethodAttributes target = access;
            if (access is MethodAttributes.Private or MethodAttributes.CompilerControlled)
                target = access;
            else if (!method.IsVirtual || access == MethodAttributes.Assembly)
                target = MethodAttributes.Public;
            else if (access is MethodAttributes.FamANDAssem or MethodAttributes.FamORAssem)
                target = MethodAttributes.Family;

            if (target != access)
            {
                method.Attributes = (method.Attributes & ~MethodAttributes.MemberAccessMask) | target;
                changed++;
            }
        }

        foreach (TypeDefinition nested in type.NestedTypes)
            changed += OpenType(nested, isNested: true);
        return changed;
    }

    private static bool IsCompilerGenerated(TypeDefinition type) =>
        type.Name.StartsWith('<') || type.CustomAttributes.Any(a =>
            a.AttributeType.FullName == "System.Runtime.CompilerServices.CompilerGeneratedAttribute");

    private static bool IsPolyfillNamespace(string ns) =>
        ns == "System" || ns.StartsWith("System.", StringComparison.Ordinal) ||
        ns == "Microsoft.CodeAnalysis" || ns.StartsWith("Microsoft.CodeAnalysis.", StringComparison.Ordinal);
}
