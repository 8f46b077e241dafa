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
        var file = Commands.Option(ref args, "-c", "--config") ?? throw new Commands.UsageException("explain needs -c FILE");
        var name = Commands.Option(ref args, "--listener") ?? throw new Commands.UsageException("explain needs --listener NAME");
        var source = Commands.Option(ref args, "--source");
        var user = Commands.Option(ref args, "--user");
        var contentType = Commands.Option(ref args, "--content-type");
        var size = Commands.Option(ref args, "--size");
        var sni = Commands.Option(ref args, "--sni");
        var headers = Commands.Options(ref args, "--header");
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
            $"no listener '{name}' in {file} (listeners: {string.Join(", ", rt.Config.Listeners.Select(l => l.Name))})");

        var a = new RequestAttributes();
        if (source is not null)
        {
            if (!IPAddress.TryParse(source, out var ip)) throw new Commands.UsageException($"--source '{source}' is not an IP address");
            a.Source = ip;
        }
        else a.Source = IPAddress.Loopback;
        a.User = user;
        var descriptor = ListenerDescriptors.Find(listener.Type) ?? throw new Commands.UsageException(
            $"listener '{name}' is of type {ListenerTypes.Name(listener.Type)}, which this version of bastion does not build");
        if (!descriptor.TryExplain(request, listener, rt, a, out var error)) throw new Commands.UsageException(error!);
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
        long sizeValue = -1;
        if (size is not null && !Units.TryParseSize(size, out sizeValue))
            throw new Commands.UsageException($"--size '{size}' is not a size");
        Decision d;
        if (!descriptor.HasResponsePhase)
        {
            // Decided once per command, `size` being the request's own (smtp: the message, SPEC 2.1).
            a.Size = sizeValue;
            d = descriptor.Decide(policy, a, trace);
        }
        else
        {
            d = descriptor.Decide(policy, a, trace);
            if (d.Allowed && (contentType is not null || size is not null))
            {
                a.ContentType = contentType;
                a.Size = sizeValue;
                trace.Add("response:");
                var rd = policy.EvaluateResponse(a, trace);
                if (!rd.Allowed) d = rd;
            }
        }
        foreach (var line in trace.Lines) Console.WriteLine("  " + line);
        Console.WriteLine($"verdict: {d.VerdictText} (rule {d.RuleName}{(d.Reason is null ? "" : $": {d.Reason}")})");
        return d.Allowed ? Commands.ExitOk : Commands.ExitDeny;
    }
}

/// <summary>REQUEST texts shared by listener types that speak HTTP.</summary>
public static class ExplainText
{
    /// <summary>`METHOD URL` or `CONNECT host:port`.</summary>
    public static bool TryHttp(string request, RequestAttributes a, out string? error)
    {
        error = null;
        var parts = request.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 2) { error = "an HTTP request is 'METHOD URL' (or 'CONNECT host:port')"; return false; }
        a.Method = parts[0].ToUpperInvariant();
        if (a.Method == "CONNECT")
        {
            if (!HostPort.TryParse(parts[1], out var hp)) { error = $"'{parts[1]}' is not host:port"; return false; }
            a.Host = hp!.Host;
            a.Port = hp.Port;
            return true;
        }
        if (!Uri.TryCreate(parts[1], UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https"))
        {
            error = $"'{parts[1]}' is not an absolute http(s) URL";
            return false;
        }
        a.Host = u.IdnHost;
        a.Port = u.Port;
        a.Path = u.AbsolutePath;
        a.Url = u.GetComponents(UriComponents.HttpRequestUrl, UriFormat.UriEscaped);
        return true;
    }
}
