-- wrk script: POST one JSON body, each request with the next bearer token of this thread's
-- share of a token file (every token a different subject, so no request is a duplicate).
-- Arguments after "--": token file, number of threads, JSON body.
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local threads = tonumber(args[2])
  mine = {}
  local n = 0
  for line in io.lines(args[1]) do
    if n % threads == id then
      mine[#mine + 1] = line
    end
    n = n + 1
  end
  body = args[3]
  sent = 0
end

function request()
  sent = sent + 1
  local token = mine[(sent - 1) % #mine + 1]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
