using Mono.Cecil;
using Mono.Cecil.Cil;

namespace Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

/// <summary>
/// Finds, in compiled code, the calls that hand LibTorch a TorchSharp Scalar which nothing keeps alive during the call.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 passes a Scalar's handle to native code without keeping the Scalar alive, so a Scalar made for one
/// call can be finalized, and its native value freed, by a garbage collection on another thread during that call.
/// The audit reads IL rather than source so that it sees through TorchSharp, where most such Scalars are made:
/// <c>t - 0.5f</c> compiles to TorchSharp's operator, which converts the number itself, and <c>a + b</c> and
/// <c>add_(b)</c> pass a fresh alpha of 1.
/// <list type="bullet">
/// <item>A Scalar is made by one of Scalar's implicit operators or by <c>ToScalar</c>. It is held when the result goes
/// straight into a local that the method disposes (a <c>using</c>, which keeps it alive to the end of its block), or
/// into a static read-only field.</item>
/// <item>A TorchSharp method is unsafe when its body, a TorchSharp method it calls (taking every TorchSharp override of a
/// virtual one), or a lambda it creates, makes a Scalar it does not hold.</item>
/// <item>A finding is a call, in an audited assembly, that makes an unheld Scalar or calls an unsafe TorchSharp method;
/// the assembly's PDB gives its file and line.</item>
/// </list>
/// </remarks>
internal sealed class TorchScalarAudit : IDisposable
{
    private readonly Resolver _resolver = new();
    private readonly AssemblyDefinition _torchSharp;
    private readonly ILookup<string, MethodDefinition> _torchSharpVirtuals;
    private readonly Dictionary<MethodDefinition, string?> _unsafe = new();
    private readonly List<AssemblyDefinition> _audited = new();

    /// <param name="torchSharpPath">TorchSharp.dll, the one the audited assemblies were built against.</param>
    public TorchScalarAudit(string torchSharpPath)
    {
        _resolver.AddSearchDirectory(Path.GetDirectoryName(torchSharpPath)!);
        _torchSharp = AssemblyDefinition.ReadAssembly(torchSharpPath, new ReaderParameters { AssemblyResolver = _resolver });
        _resolver.Add(_torchSharp);
        _torchSharpVirtuals = _torchSharp.MainModule.GetTypes().SelectMany(t => t.Methods).Where(m => m.IsVirtual).ToLookup(m => m.Name);
    }

    /// <summary>The findings in an assembly (with its PDB beside it), as "file:line: in Method: reason".</summary>
    /// <param name="assemblyPath">The assembly.</param>
    /// <param name="audited">Which of its types to audit; null: all.</param>
    public IReadOnlyList<string> Findings(string assemblyPath, Func<TypeDefinition, bool>? audited = null)
    {
        var assembly = AssemblyDefinition.ReadAssembly(assemblyPath, new ReaderParameters { AssemblyResolver = _resolver, ReadSymbols = true });
        _audited.Add(assembly);
        var findings = new List<string>();
        foreach (var type in assembly.MainModule.GetTypes().Where(t => audited?.Invoke(t) ?? true))
        {
            foreach (var method in type.Methods.Where(m => m.HasBody))
            {
                foreach (var instruction in method.Body.Instructions)
                {
                    if (Callee(instruction) is not { } callee)
                        continue;
                    string? reason = MakesScalar(callee)
                        ? Held(method.Body, instruction) ? null : $"{Name(callee)} makes a Scalar that is not held"
                        : IsTorchSharp(callee) ? UnsafeReason(callee) : null;
                    if (reason is not null)
                        findings.Add($"{Location(method, instruction)}: in {type.Name}.{method.Name}: {reason}");
                }
            }
        }
        return findings;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var assembly in _audited)
            assembly.Dispose();
        _torchSharp.Dispose();
        _resolver.Dispose();
    }

    /// <summary>The method an instruction calls, or makes a delegate of.</summary>
    private static MethodReference? Callee(Instruction instruction) =>
        instruction.OpCode.Code is Code.Call or Code.Callvirt or Code.Newobj or Code.Ldftn or Code.Ldvirtftn
            ? instruction.Operand as MethodReference
            : null;

    private static bool MakesScalar(MethodReference method) =>
        method.DeclaringType.FullName == "TorchSharp.Scalar" && method.Name == "op_Implicit"
        || method.DeclaringType.FullName == "TorchSharp.ScalarExtensionMethods" && method.Name == "ToScalar";

    private static bool IsTorchSharp(MethodReference method) => method.DeclaringType.Scope.Name is "TorchSharp" or "TorchSharp.dll";

    /// <summary>Whether the Scalar a call returns is stored in a local the method disposes, or in a static read-only field.</summary>
    private static bool Held(MethodBody body, Instruction call)
    {
        var next = call.Next;
        if (next?.OpCode.Code == Code.Stsfld)
            return ((FieldReference)next.Operand).Resolve() is { IsStatic: true, IsInitOnly: true };
        if (LocalStored(next) is not { } local)
            return false;
        return body.Instructions.Any(i => LocalLoaded(i) == local
            && i.Next is { OpCode.Code: Code.Callvirt or Code.Call } dispose && ((MethodReference)dispose.Operand).Name == "Dispose");
    }

    private static int? LocalStored(Instruction? i) => i?.OpCode.Code switch
    {
        Code.Stloc_0 => 0, Code.Stloc_1 => 1, Code.Stloc_2 => 2, Code.Stloc_3 => 3,
        Code.Stloc_S or Code.Stloc => ((VariableDefinition)i.Operand).Index,
        _ => null,
    };

    private static int? LocalLoaded(Instruction i) => i.OpCode.Code switch
    {
        Code.Ldloc_0 => 0, Code.Ldloc_1 => 1, Code.Ldloc_2 => 2, Code.Ldloc_3 => 3,
        Code.Ldloc_S or Code.Ldloc => ((VariableDefinition)i.Operand).Index,
        _ => null,
    };

    /// <summary>Why calling a TorchSharp method may make an unheld Scalar (through which methods), or null.</summary>
    private string? UnsafeReason(MethodReference method)
    {
        foreach (var target in Targets(method))
        {
            if (Unsafe(target) is { } reason)
                return target == method.Resolve() ? reason : $"{reason} (an override of {Name(method)})";
        }
        return null;
    }

    /// <summary>The TorchSharp method a reference names and, when it is virtual, every TorchSharp override of it.</summary>
    private IEnumerable<MethodDefinition> Targets(MethodReference reference)
    {
        if (reference.Resolve() is not { } method || method.Module != _torchSharp.MainModule)
            yield break;
        yield return method;
        if (!method.IsVirtual || method.IsFinal)
            yield break;
        foreach (var candidate in _torchSharpVirtuals[method.Name])
        {
            if (candidate != method && candidate.Parameters.Count == method.Parameters.Count && Derives(candidate.DeclaringType, method.DeclaringType))
                yield return candidate;
        }
    }

    private bool Derives(TypeDefinition type, TypeDefinition baseType)
    {
        for (var t = type; t is not null && t.Module == _torchSharp.MainModule; t = t.BaseType?.Resolve())
        {
            if (t == baseType)
                return true;
        }
        return false;
    }

    private string? Unsafe(MethodDefinition method)
    {
        if (_unsafe.TryGetValue(method, out var known))
            return known;
        _unsafe[method] = null;   // a method on a cycle is judged by the rest of its body
        string? reason = null;
        if (method.HasBody)
        {
            foreach (var instruction in method.Body.Instructions)
            {
                if (Callee(instruction) is not { } callee)
                    continue;
                if (MakesScalar(callee))
                {
                    if (!Held(method.Body, instruction))
                        reason = $"{Name(method)} makes a Scalar that it does not hold";
                }
                else if (IsTorchSharp(callee) && UnsafeReason(callee) is { } inner)
                {
                    reason = inner.Contains(" (through ", StringComparison.Ordinal) ? inner : $"{inner} (through {Name(method)})";
                }
                if (reason is not null)
                    break;
            }
        }
        _unsafe[method] = reason;
        return reason;
    }

    private static string Name(MethodReference method) =>
        $"{method.DeclaringType.Name}.{method.Name}({string.Join(", ", method.Parameters.Select(p => p.ParameterType.Name))})";

    private static string Location(MethodDefinition method, Instruction instruction)
    {
        SequencePoint? point = null;
        foreach (var candidate in method.DebugInformation.SequencePoints)
        {
            if (candidate.Offset <= instruction.Offset && !candidate.IsHidden)
                point = candidate;
        }
        return point is null ? $"{method.Module.Name} (no line information)" : $"{point.Document.Url}:{point.StartLine}";
    }

    /// <summary>Resolves TorchSharp to the one copy the audit has read, so that its methods compare by reference.</summary>
    private sealed class Resolver : DefaultAssemblyResolver
    {
        public void Add(AssemblyDefinition assembly) => RegisterAssembly(assembly);
    }
}
