using System.Net;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Cli;

/// <summary>`bastion explain`: one request in the listener's own terms, judged by its policy, with the trace.</summary>
public static class Explain
{
    sealed class Headers(Dictionary<string, string> map) : IHeaderSource
    {
        public string? Get(string name) => map.TryGetValue(name, out var v) ? v : null;
    }

    public static int Run(string[] args)
    {
        var file = Commands.ConfigOption(ref args);
        var listenerName = Commands.Option(ref args, "--listener");
        var source = Commands.Option(ref args, "--source");
        var user = Commands.Option(ref args, "--user");
        var contentType = Commands.Option(ref args, "--content-type");
        var size = Commands.Option(ref args, "--size");
        var sni = Commands.Option(ref args, "--sni");
        var headers = Commands.Options(ref args, "--header");
        if (args.Length > 0 && args[0].StartsWith("--", StringComparison.Ordinal))
            Commands.NoMore(args, "--config", "--listener", "--source", "--user", "--content-type", "--size", "--sni", "--header");
        var name = listenerName ?? throw new Commands.UsageException("explain needs --listener NAME");
        if (args.Length == 0) throw new Commands.UsageException("explain needs a REQUEST (like 'GET http://example.com/' or 'CONNECT example.com:443')");
        var request = string.Join(' ', args);

        Runtime rt;
        try { rt = Runtime.Load(file); }
        catch (ConfigException e)
        {
            foreach (var err in e.Errors) Console.Error.WriteLine(err);
            return Commands.ExitUsage;
        }
        var listener = rt.Listener(name) ?? throw new Commands.UsageException(
            $"no listener '{name}' in {file ?? "the embedded default"}{Configuration.Suggest.Hint(name, rt.Config.Listeners.Select(l => l.Name))} (listeners: {string.Join(", ", rt.Config.Listeners.Select(l => l.Name))})");

        var a = new RequestAttributes();
        if (source is not null)
        {
            if (!IPAddress.TryParse(source, out var ip)) throw new Commands.UsageException($"--source '{source}' is not an IP address");
            a.Source = ip;
        }
        else a.Source = IPAddress.Loopback;
        a.User = user;
        if (headers.Count > 0)
        {
            var map = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var h in headers)
            {
                int colon = h.IndexOf(':');
                if (colon <= 0) throw new Commands.UsageException($"--header '{h}' is not 'Name: value'");
                map[h[..colon].Trim()] = h[(colon + 1)..].Trim();
            }
            a.Headers = new Headers(map);
        }
        if (sni is not null) a.Sni = sni;

        var policy = rt.PolicyFor(listener);
        var trace = new PolicyTrace();
        Console.WriteLine($"listener {listener.Name} ({ListenerTypes.Name(listener.Type)}), policy {policy.Name}, default {(policy.Default == Verdict.Allow ? "allow" : "deny")}");
        Console.WriteLine($"request: {request}  source={a.Source}{(a.User is null ? "" : $" user={a.User}")}");
        long? sizeValue = null;
        if (size is not null)
        {
            if (!Units.TryParseSize(size, out var sv)) throw new Commands.UsageException($"--size '{size}' is not a size");
            sizeValue = sv;
        }
        var d = Judge(rt, listener, request, a, contentType, sizeValue, trace);
        foreach (var line in trace.Lines) Console.WriteLine("  " + line);
        Console.WriteLine($"verdict: {d.VerdictText} (rule {d.RuleName}{(d.Reason is null ? "" : $": {d.Reason}")})");
        return d.Allowed ? Commands.ExitOk : Commands.ExitDeny;
    }

    /// <summary>
    /// The decision a live listener would make on REQUEST: the type's descriptor maps it to attributes with the
    /// code the live session uses and decides as the session does; a content type or size judges a response too.
    /// <paramref name="a"/> comes with what the caller knows of the client (source, user, headers, SNI).
    /// </summary>
    public static Decision Judge(Runtime rt, ListenerConfig listener, string request, RequestAttributes a,
        string? contentType = null, long? size = null, PolicyTrace? trace = null)
    {
        var descriptor = ListenerDescriptors.Find(listener.Type) ?? throw new Commands.UsageException(
            $"listener '{listener.Name}' is of type {ListenerTypes.Name(listener.Type)}, which this version of bastion does not build");
        if (!descriptor.TryExplain(request, listener, rt, a, out var error)) throw new Commands.UsageException(error!);
        var policy = rt.PolicyFor(listener);
        if (!descriptor.HasResponsePhase)
        {
            // Decided once per command, `size` being the request's own (smtp: the message, SPEC 2.1).
            a.Size = size ?? -1;
            return descriptor.Decide(policy, a, trace);
        }
        var d = descriptor.Decide(policy, a, trace);
        if (d.Allowed && (contentType is not null || size is not null))
        {
            a.ContentType = contentType;
            a.Size = size ?? -1;
            trace?.Add("response:");
            var rd = policy.EvaluateResponse(a, trace);
            if (!rd.Allowed) d = rd;
        }
        return d;
    }
}
