using System.Reflection;
using System.Runtime.InteropServices;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Identity;
using Bastion.Policy;

namespace Bastion.Cli;

/// <summary>The command line (SPEC 1): run, check, explain, passwd, ca, --version, --help.</summary>
public static class Commands
{
    public const int ExitOk = 0, ExitDeny = 1, ExitUsage = 2;

    public static string Version =>
        Assembly.GetExecutingAssembly().GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    const string Help = """
        bastion — an application-level gateway (proxy firewall)

        usage:
          bastion run [-c FILE] [--no-watch] run the gateway (no -c: the embedded default, a forward proxy
                                             on 127.0.0.1:3128 for loopback clients, admin on 127.0.0.1:9090);
                                             SIGHUP reloads, and so does a change to FILE unless --no-watch
          bastion check -c FILE              validate a configuration: 'ok', or FILE:LINE:COL: message (exit 2)
          bastion explain -c FILE --listener NAME [--source IP] [--user NAME]
                          [--header 'Name: value'] [--content-type TYPE] [--size N] [--sni NAME] REQUEST
                                             what the policy decides for one request, and why (exit 0 allow, 1 deny)
                                             REQUEST: 'GET http://h/p', 'CONNECT h:443', 'h:port', 'STOR /pub/f', 'RCPT TO:<a@b>'
          bastion passwd FILE USER           add or replace USER in an htpasswd file (bcrypt; password on stdin)
          bastion ca init DIR [--rsa] [--name-constraint DOMAIN]...
                                             create the TLS-inspection CA (ECDSA P-256, or RSA) in DIR
          bastion --version | --help
        """;

    public static async Task<int> MainAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            Console.WriteLine(Help);
            return args.Length == 0 ? ExitUsage : ExitOk;
        }
        if (args[0] is "--version" or "-V" or "version")
        {
            Console.WriteLine($"bastion {Version}");
            return ExitOk;
        }
        try
        {
            return args[0] switch
            {
                "run" => await RunAsync(args[1..]),
                "check" => Check(args[1..]),
                "explain" => Explain.Run(args[1..]),
                "passwd" => Passwd(args[1..]),
                "ca" => CaCommand.Run(args[1..]),
                _ => Usage($"unknown command '{args[0]}'"),
            };
        }
        catch (UsageException e)
        {
            return Usage(e.Message);
        }
    }

    internal sealed class UsageException(string message) : Exception(message);

    static int Usage(string message)
    {
        Console.Error.WriteLine($"bastion: {message}");
        Console.Error.WriteLine("Try 'bastion --help'.");
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

    static int Check(string[] args)
    {
        var file = Option(ref args, "-c", "--config") ?? throw new UsageException("check needs -c FILE");
        if (args.Length > 0) throw new UsageException($"unexpected '{args[0]}'");
        string text;
        try { text = File.ReadAllText(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.WriteLine($"{file}:1:1: cannot read configuration: {e.Message}");
            return ExitUsage;
        }
        var (_, errors) = Runtime.Build(text, file);
        foreach (var e in errors.OrderBy(e => e.Pos.Line).ThenBy(e => e.Pos.Col)) Console.WriteLine(e);
        if (errors.Any(e => !e.IsWarning)) return ExitUsage;
        Console.WriteLine("ok");
        return ExitOk;
    }

    static int Passwd(string[] args)
    {
        if (args.Length != 2) throw new UsageException("passwd needs FILE USER");
        var (file, user) = (args[0], args[1]);
        if (user.Length == 0 || user.Contains(':') || user.Any(char.IsWhiteSpace))
            throw new UsageException("a user name must not be empty or contain ':' or spaces");
        string? password;
        if (!Console.IsInputRedirected) Console.Error.Write($"password for {user}: ");
        password = Console.In.ReadLine();
        if (string.IsNullOrEmpty(password))
        {
            Console.Error.WriteLine("bastion: empty password refused");
            return ExitUsage;
        }
        if (Htpasswd.PasswordProblem(password) is { } problem) throw new UsageException(problem);
        try { Htpasswd.Upsert(file, user, Htpasswd.HashBcrypt(password)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"bastion: cannot write {file}: {e.Message}");
            return ExitUsage;
        }
        Console.Error.WriteLine($"bastion: {user} saved in {file}");
        return ExitOk;
    }

    static async Task<int> RunAsync(string[] args)
    {
        var file = Option(ref args, "-c", "--config");
        bool watch = !args.Contains("--no-watch");
        args = [.. args.Where(a => a != "--no-watch")];
        if (args.Length > 0) throw new UsageException($"unexpected '{args[0]}'");
        Runtime runtime;
        try { runtime = Runtime.Load(file); }
        catch (ConfigException e)
        {
            foreach (var err in e.Errors) Console.Error.WriteLine(err);
            Console.Error.WriteLine("bastion: configuration has errors; not starting");
            return ExitUsage;
        }

        await using var host = new GatewayHost(runtime, file);
        // Signals are taken over before anything says "running": a SIGHUP must never kill a starting gateway.
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
        {
            c.Cancel = true;
            // The host logs the outcome (reloaded, or refused with every error) on stderr.
            _ = started.Task.ContinueWith(_ => host.ReloadAsync("SIGHUP"), TaskScheduler.Default).Unwrap();
        });
        try { await host.StartAsync(); }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or InvalidOperationException)
        {
            Console.Error.WriteLine($"bastion: cannot start: {e.Message}");
            return ExitUsage;
        }
        foreach (var (name, l) in host.Listeners)
            Console.Error.WriteLine($"bastion: listener '{name}' ({ListenerTypes.Name(l.Type)}) listening on {l.BoundEndPoint}");
        Console.Error.WriteLine(file is null
            ? $"bastion {Version} running (embedded default configuration); SIGTERM stops"
            : $"bastion {Version} running ({file}); SIGHUP or a change to the file reloads, SIGTERM stops");
        started.TrySetResult();

        using var watcher = file is null || !watch ? null : new ConfigWatcher(host);
        await stop.Task;
        var drain = host.Current.Config.Listeners.Select(l => l.Limits.DrainTimeout).DefaultIfEmpty(TimeSpan.FromSeconds(10)).Max();
        Console.Error.WriteLine($"bastion: stopping: no new connections; draining open ones for up to {drain.TotalSeconds:0.#}s");
        watcher?.Dispose();
        await host.StopAsync(drain);
        Console.Error.WriteLine("bastion: stopped");
        return ExitOk;
    }
}
