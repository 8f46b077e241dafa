using System.Reflection;
using Bastion.Configuration;

namespace Bastion.Cli;

/// <summary>The command line (SPEC 1): dispatch to run, check, explain, passwd, ca; --version, --help.</summary>
public static class Commands
{
    public const int ExitOk = 0, ExitDeny = 1, ExitUsage = 2;
    /// <summary>`run` could not start (an address in use, a log or certificate it cannot open).</summary>
    public const int ExitStartFailed = 1;

    /// <summary>Where `run`, `check` and `explain` look without -c: the installed package's file.</summary>
    public const string SystemConfig = "/etc/bastion/bastion.yaml";

    public static string Version =>
        Assembly.GetExecutingAssembly().GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    static readonly string[] Names = ["run", "check", "explain", "passwd", "ca", "help", "version"];

    public static async Task<int> MainAsync(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine(Help.Overview);
            return ExitUsage;
        }
        if (args[0] is "--help" or "-h" or "help")
        {
            var topic = args.Length > 1 ? Help.For(args[1]) : Help.Overview;
            if (topic is null) return Usage($"no help for '{args[1]}'{Suggest.Hint(args[1], Names)}");
            Console.WriteLine(topic);
            return ExitOk;
        }
        if (args[0] is "--version" or "-V" or "version")
        {
            Console.WriteLine($"bastion {Version}");
            return ExitOk;
        }
        // `bastion run --help`: every subcommand explains itself instead of failing on the option.
        if (args.Length > 1 && args[1..].Any(a => a is "--help" or "-h") && Help.For(args[0]) is { } text)
        {
            Console.WriteLine(text);
            return ExitOk;
        }
        try
        {
            return args[0] switch
            {
                "run" => await RunCommand.RunAsync(args[1..]),
                "check" => CheckCommand.Run(args[1..]),
                "explain" => Explain.Run(args[1..]),
                "passwd" => PasswdCommand.Run(args[1..]),
                "ca" => CaCommand.Run(args[1..]),
                _ => Usage($"unknown command '{args[0]}'{Suggest.Hint(args[0], Names)}"),
            };
        }
        catch (UsageException e)
        {
            return Usage(e.Message, args[0]);
        }
    }

    internal sealed class UsageException(string message) : Exception(message);

    static int Usage(string message, string? command = null)
    {
        Console.Error.WriteLine($"bastion: {message}");
        Console.Error.WriteLine(command is not null && Help.For(command) is not null ? $"Try 'bastion {command} --help'." : "Try 'bastion --help'.");
        return ExitUsage;
    }

    internal static string? Option(ref string[] args, string name, string? alias = null)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == name || (alias is not null && args[i] == alias))
            {
                if (i + 1 >= args.Length) throw new UsageException($"{name} needs a value");
                var v = args[i + 1];
                args = [.. args[..i], .. args[(i + 2)..]];
                return v;
            }
        }
        return null;
    }

    internal static List<string> Options(ref string[] args, string name)
    {
        var all = new List<string>();
        while (Option(ref args, name) is { } v) all.Add(v);
        return all;
    }

    internal static bool Flag(ref string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        if (i < 0) return false;
        args = [.. args[..i], .. args[(i + 1)..]];
        return true;
    }

    /// <summary>What is left after the known options were taken: an unknown option or a stray word is a usage error.</summary>
    internal static void NoMore(string[] args, params string[] known)
    {
        if (args.Length == 0) return;
        if (args[0].StartsWith('-'))
            throw new UsageException($"unknown option '{args[0]}'{Suggest.Hint(args[0], known)}");
        throw new UsageException($"unexpected '{args[0]}'");
    }

    /// <summary>-c FILE, else the system file when it exists (BASTION_CONFIG names another), else null: the embedded default.</summary>
    internal static string? ConfigOption(ref string[] args)
    {
        if (Option(ref args, "-c", "--config") is { } file) return file;
        var system = Environment.GetEnvironmentVariable("BASTION_CONFIG") is { Length: > 0 } env ? env : SystemConfig;
        return File.Exists(system) ? system : null;
    }
}
