using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Bastion.Tests.Infrastructure;

/// <summary>
/// A misbehaving origin: a socket server that answers every request head it reads with exactly the bytes a test
/// gives it (ambiguous framing, an unrequested 101, duplicate Content-Types), and records the heads it received.
/// </summary>
public sealed class ScriptedOrigin : IAsyncDisposable
{
    readonly Socket _listen;
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;
    public int Port { get; }
    public IPAddress Address { get; }
    public string Url => $"http://{Address}:{Port}";
    public ConcurrentQueue<string> Requests { get; } = new();

    public ScriptedOrigin(string response, bool closeAfter = false, string address = "127.0.0.1")
    {
        Address = IPAddress.Parse(address);
        _listen = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listen.Bind(new IPEndPoint(Address, 0));
        _listen.Listen(64);
        Port = ((IPEndPoint)_listen.LocalEndPoint!).Port;
        var bytes = Encoding.Latin1.GetBytes(response);
        _loop = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket s;
                try { s = await _listen.AcceptAsync(_stop.Token); }
                catch (Exception) { break; }
                _ = Task.Run(async () =>
                {
                    using (s)
                    {
                        try
                        {
                            while (true)
                            {
                                var head = await Raw.ReadHeadAsync(s, TimeSpan.FromSeconds(10));
                                if (head.Length == 0) break;
                                Requests.Enqueue(head);
                                await s.SendAsync(bytes, SocketFlags.None);
                                if (closeAfter) break;
                            }
                        }
                        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
                    }
                });
            }
        });
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listen.Dispose();
        await _loop.ContinueWith(_ => { }, TaskScheduler.Default);
    }
}
